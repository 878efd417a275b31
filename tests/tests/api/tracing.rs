//! W3C trace context across the asynchronous hops: the request's `traceparent` is stored with
//! the events it caused, and the saga, the gateway call and the webhook that reports the
//! payment all continue the same trace.

use serde_json::{Value, json};
use tests::{StoredEvent, TestApp, eventually, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `(trace id, span id)` of a well-formed `traceparent`; panics otherwise.
#[track_caller]
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    assert_eq!(fields[1].len(), 32, "{traceparent}");
    assert_eq!(fields[2].len(), 16, "{traceparent}");
    assert!(
        fields[1].chars().all(|c| c.is_ascii_hexdigit()) && fields[1] != "0".repeat(32),
        "{traceparent}"
    );
    (fields[1].to_owned(), fields[2].to_owned())
}

/// The `traceparent` stored with `event`; panics when there is none.
#[track_caller]
fn stored(event: &StoredEvent) -> (String, String) {
    let value = event.metadata["traceparent"].as_str().unwrap_or_else(|| {
        panic!(
            "{} has no traceparent: {}",
            event.event_type, event.metadata
        )
    });
    parts(value)
}

/// Places an order with `headers` and returns the response's `traceparent` header and the id.
async fn place_order(app: &TestApp, headers: &[(&str, &str)]) -> (Option<String>, String) {
    let mut request = app
        .client
        .post(format!("{}/api/v1/orders", app.address))
        .json(&json!({"customer_id": uuid::Uuid::new_v4(),
                      "items": [{"sku": "MUG-1", "quantity": 1}]}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 202);
    let traceparent = response
        .headers()
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned());
    let accepted: Value = response.json().await.unwrap();
    (traceparent, accepted["id"].as_str().unwrap().to_owned())
}

async fn completed(app: &TestApp, id: &str) {
    eventually(&format!("order {id} completes"), || async {
        let (code, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && order["status"] == "COMPLETED").then_some(())
    })
    .await;
}

async fn order_placed(app: &TestApp, id: &str) -> StoredEvent {
    let events = app.events_for("order", id).await;
    assert_eq!(events[0].event_type, "OrderPlaced");
    events[0].clone()
}

#[tokio::test]
async fn one_order_is_one_trace_from_the_request_through_the_saga_and_the_payment_webhook() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");

    // Act
    let (answered, id) = place_order(&app, &[("traceparent", &incoming)]).await;
    completed(&app, &id).await;

    // Assert: the request's span is a child of the caller's, in the caller's trace.
    let (trace, request_span) = parts(&answered.expect("a traceparent response header"));
    assert_eq!(trace, TRACE_ID);
    assert_ne!(request_span, CALLER_SPAN);
    let placed = order_placed(&app, &id).await;
    assert_eq!(stored(&placed), (TRACE_ID.to_owned(), request_span.clone()));

    // Everything the saga did, before and after the payment webhook, is in the same trace,
    // each from a span of its own.
    let events = app.all_events().await;
    let of = |aggregate: &str, event_type: &str| -> StoredEvent {
        events
            .iter()
            .find(|e| e.aggregate_type == aggregate && e.event_type == event_type)
            .unwrap_or_else(|| panic!("no {aggregate} {event_type}"))
            .clone()
    };
    let saga_events = [
        of("stock_item", "StockReserved"),
        of("order", "OrderStockReserved"),
        of("payment", "PaymentCreated"),
        of("payment", "PaymentSucceeded"),
        of("stock_item", "ReservationCommitted"),
        of("order", "OrderCompleted"),
    ];
    let mut spans = vec![request_span];
    for event in &saga_events {
        let (trace, span) = stored(event);
        assert_eq!(trace, TRACE_ID, "{} left the trace", event.event_type);
        spans.push(span);
    }
    // The saga's first step (placing) and its step after the webhook are different spans,
    // and the webhook's request is a span of its own.
    let (_, reserve) = stored(&saga_events[0]);
    let (_, webhook) = stored(&saga_events[3]);
    let (_, complete) = stored(&saga_events[5]);
    assert_ne!(reserve, spans[0]);
    assert_ne!(webhook, reserve);
    assert_ne!(complete, reserve);
    assert_ne!(complete, webhook);
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_new_trace_and_stores_it() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;

    // Act
    let (answered, first) = place_order(&app, &[]).await;
    let (_, second) = place_order(&app, &[]).await;

    // Assert
    let (trace, span) = parts(&answered.expect("a traceparent response header"));
    assert_ne!(trace, TRACE_ID);
    assert_eq!(
        stored(&order_placed(&app, &first).await),
        (trace.clone(), span)
    );
    let (other, _) = stored(&order_placed(&app, &second).await);
    assert_ne!(other, trace, "each request starts its own trace");
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_and_a_new_trace_starts() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let malformed = [
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ];

    for value in malformed {
        // Act
        let (answered, id) = place_order(&app, &[("traceparent", value)]).await;

        // Assert
        let (trace, _) = parts(&answered.expect("a traceparent response header"));
        assert_ne!(trace, TRACE_ID, "{value} was taken as a parent");
        let (stored_trace, _) = stored(&order_placed(&app, &id).await);
        assert_eq!(stored_trace, trace, "{value}");
    }
}

#[tokio::test]
async fn tracestate_is_accepted_with_traceparent() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");

    // Act
    let (answered, id) = place_order(
        &app,
        &[
            ("traceparent", &incoming),
            ("tracestate", "vendor=abc,other=1"),
        ],
    )
    .await;

    // Assert
    let (trace, _) = parts(&answered.expect("a traceparent response header"));
    assert_eq!(trace, TRACE_ID);
    assert_eq!(stored(&order_placed(&app, &id).await).0, TRACE_ID);
}

#[tokio::test]
async fn an_unsampled_caller_still_has_its_trace_continued_and_stored() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");

    // Act
    let (answered, id) = place_order(&app, &[("traceparent", &incoming)]).await;

    // Assert: not exported (the caller did not sample it), but still one trace.
    let answered = answered.expect("a traceparent response header");
    assert!(answered.ends_with("-00"), "{answered}");
    let (trace, span) = parts(&answered);
    assert_eq!(trace, TRACE_ID);
    assert_eq!(stored(&order_placed(&app, &id).await), (trace, span));
}
