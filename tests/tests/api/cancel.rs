//! `POST /api/v1/orders/{id}/cancel` and `/bookings/{id}/cancel`.
//!
//! The order and booking sagas run in every test app and may move an order forward (reserve,
//! pay, complete) before or after the cancel lands; a cancel of a `COMPLETED` order is legal
//! too (it is then refunded). So these tests assert what holds either way: the answer, and the
//! cancel events in the store.

use api::configuration::GatewaySettings;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{StoredEvent, TestApp, eventually, spawn_app, spawn_app_with};

/// Places an order for one unit of `sku` over HTTP and returns its id.
async fn place_order(app: &TestApp, sku: &str) -> String {
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(),
                    "items": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 202, "place an order for {sku}");
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Registers a time slot of 20 seats at 250.00 MXN and books two of them; returns the booking.
async fn place_booking(app: &TestApp) -> String {
    let slot = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "TOUR-1", "name": "Tour", "kind": "time_slot", "quantity": 20,
                    "starts_at": "2026-12-01T09:00:00Z",
                    "unit_price": {"amount": 25000, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(slot.status(), 202, "register the slot");
    let response = app
        .post(
            "/api/v1/bookings",
            &json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "TOUR-1", "guests": 2}),
        )
        .await;
    assert_eq!(response.status(), 202, "place a booking");
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `POST path` with no body and no content type.
async fn post_empty(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .send()
        .await
        .expect("request")
}

/// The events of `aggregate` `id` of type `event_type`.
async fn events_of(app: &TestApp, aggregate: &str, id: &str, event_type: &str) -> Vec<StoredEvent> {
    app.events_for(aggregate, id)
        .await
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

/// A 202 answer's body, checked to name `id` and to point at the resource.
async fn accepted(response: reqwest::Response, kind: &str, id: &str) -> Value {
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["location"],
        format!("/api/v1/{kind}/{id}").as_str()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id, "{body}");
    body
}

/// A problem answer: its status and body, checked to be problem+json.
async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn cancelling_a_just_placed_order_answers_202_and_records_one_order_cancelled() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, "MUG-1").await;

    // Act
    let response = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({"reason": "  changed my mind "}),
        )
        .await;

    // Assert
    let body = accepted(response, "orders", &id).await;
    let cancelled = events_of(&app, "order", &id, "OrderCancelled").await;
    assert_eq!(cancelled.len(), 1, "exactly one OrderCancelled");
    assert_eq!(body["position"], json!(cancelled[0].global_position));
    let payload = &cancelled[0].payload["OrderCancelled"];
    assert_eq!(payload["reason"], "changed my mind", "{payload}");
    // Cancelled before payment it stays CANCELLED; after, the saga refunds it.
    let position = cancelled[0].global_position.unwrap();
    let (_, order) = app
        .get_json(&format!("/api/v1/orders/{id}?min_position={position}"))
        .await;
    let status = order["status"].as_str().unwrap_or_default();
    assert!(["CANCELLED", "REFUNDED"].contains(&status), "{order}");
}

#[tokio::test]
async fn a_cancel_without_a_body_or_reason_records_the_default_reason() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let bare = place_order(&app, "MUG-1").await;
    let empty_object = place_order(&app, "MUG-1").await;
    let empty_json = place_order(&app, "MUG-1").await;

    // Act
    let responses = [
        post_empty(&app, &format!("/api/v1/orders/{bare}/cancel")).await,
        app.post(&format!("/api/v1/orders/{empty_object}/cancel"), &json!({}))
            .await,
        app.post_raw(
            &format!("/api/v1/orders/{empty_json}/cancel"),
            "application/json",
            Vec::new(),
        )
        .await,
    ];

    // Assert
    for (response, id) in responses.into_iter().zip([bare, empty_object, empty_json]) {
        accepted(response, "orders", &id).await;
        let cancelled = events_of(&app, "order", &id, "OrderCancelled").await;
        assert_eq!(cancelled.len(), 1, "{id}");
        assert_eq!(
            cancelled[0].payload["OrderCancelled"]["reason"],
            "cancelled by customer"
        );
    }
}

#[tokio::test]
async fn cancelling_an_order_twice_answers_202_both_times_at_the_same_position() {
    // Arrange: payments never settle during the test, so the order cannot complete and be
    // refunded between the two cancels (a refunded order may no longer be cancelled).
    let app = spawn_app_with(|settings| {
        settings.gateway = GatewaySettings::Simulated {
            delay: Duration::from_secs(3600),
        };
    })
    .await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, "MUG-1").await;
    let path = format!("/api/v1/orders/{id}/cancel");

    // Act
    let first = accepted(
        app.post(&path, &json!({"reason": "first"})).await,
        "orders",
        &id,
    )
    .await;
    let second = accepted(
        app.post(&path, &json!({"reason": "second"})).await,
        "orders",
        &id,
    )
    .await;

    // Assert
    assert!(first["position"].is_i64(), "{first}");
    assert_eq!(second["position"], first["position"]);
    let cancelled = events_of(&app, "order", &id, "OrderCancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].payload["OrderCancelled"]["reason"], "first");
}

#[tokio::test]
async fn cancelling_an_order_that_failed_is_409_illegal_transition() {
    // Arrange: nothing to reserve, so the saga fails the order.
    let app = spawn_app().await;
    app.register_product("EMPTY-1", 0).await;
    let id = place_order(&app, "EMPTY-1").await;
    eventually(&format!("order {id} reaches STOCK_FAILED"), || async {
        let (code, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && order["status"] == "STOCK_FAILED").then_some(())
    })
    .await;
    let before = app.events_for("order", &id).await.len();

    // Act
    let response = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
        .await;

    // Assert
    let (status, body) = problem(response).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "illegal_transition");
    assert!(body["correlation_id"].is_string(), "{body}");
    assert_eq!(app.events_for("order", &id).await.len(), before);
}

#[tokio::test]
async fn cancelling_an_unknown_order_or_booking_is_404_and_writes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4();

    for (kind, code) in [
        ("orders", "order_not_found"),
        ("bookings", "booking_not_found"),
    ] {
        // Act
        let response = post_empty(&app, &format!("/api/v1/{kind}/{unknown}/cancel")).await;

        // Assert
        let (status, body) = problem(response).await;
        assert_eq!((status, &body["code"]), (404, &json!(code)), "{body}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_malformed_id_is_refused_as_the_reads_refuse_it() {
    // Arrange
    let app = spawn_app().await;

    for kind in ["orders", "bookings"] {
        // Act
        let read = app
            .get(&format!("/api/v1/{kind}/not-a-uuid"))
            .await
            .status();
        let response = post_empty(&app, &format!("/api/v1/{kind}/not-a-uuid/cancel")).await;

        // Assert
        let (status, body) = problem(response).await;
        assert_eq!(status, read.as_u16(), "{kind}: {body}");
        assert_eq!((status, &body["code"]), (400, &json!("validation_failed")));
        assert_eq!(body["errors"][0]["field"], "id", "{body}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_bad_cancel_body_is_a_4xx_problem_and_cancels_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, "MUG-1").await;
    let path = format!("/api/v1/orders/{id}/cancel");
    // (case, JSON body, code, field named): all 400.
    let cases: [(&str, &str, &str, Option<&str>); 6] = [
        ("broken json", r#"{"reason":"#, "malformed_json", None),
        ("trailing garbage", "{} {}", "malformed_json", None),
        ("an array", "[]", "validation_failed", Some("$")),
        (
            "a number",
            r#"{"reason":5}"#,
            "validation_failed",
            Some("reason"),
        ),
        (
            "unknown field",
            r#"{"why":"x"}"#,
            "validation_failed",
            Some("why"),
        ),
        (
            "blank",
            r#"{"reason":"  "}"#,
            "validation_failed",
            Some("reason"),
        ),
    ];

    for (name, body, code, field) in cases {
        // Act
        let response = app
            .post_raw(&path, "application/json", body.as_bytes().to_vec())
            .await;

        // Assert
        let (status, problem) = problem(response).await;
        assert_eq!(
            (status, &problem["code"]),
            (400, &json!(code)),
            "{name}: {problem}"
        );
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{name}: {problem}");
        }
    }
    let text = app
        .post_raw(&path, "text/plain", b"changed my mind".to_vec())
        .await;
    let (status, body) = problem(text).await;
    assert_eq!(
        (status, &body["code"]),
        (415, &json!("unsupported_media_type"))
    );
    assert!(
        events_of(&app, "order", &id, "OrderCancelled")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_reason_over_500_characters_is_refused_and_one_of_500_is_kept() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, "MUG-1").await;
    let path = format!("/api/v1/orders/{id}/cancel");
    // Characters, not bytes: 500 two-byte characters are within the limit.
    let longest = "é".repeat(500);

    // Act
    let too_long = app.post(&path, &json!({"reason": "x".repeat(501)})).await;
    let (status, body) = problem(too_long).await;
    let kept = app.post(&path, &json!({"reason": longest})).await;

    // Assert: a field that fails validation is bad input (400), as on every other command.
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("validation_failed")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "reason", "{body}");
    accepted(kept, "orders", &id).await;
    let cancelled = events_of(&app, "order", &id, "OrderCancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0].payload["OrderCancelled"]["reason"],
        longest.as_str()
    );
}

#[tokio::test]
async fn cancelling_a_booking_answers_202_and_records_one_booking_cancelled() {
    // Arrange
    let app = spawn_app().await;
    let id = place_booking(&app).await;

    // Act
    let response = app
        .post(
            &format!("/api/v1/bookings/{id}/cancel"),
            &json!({"reason": "rain"}),
        )
        .await;

    // Assert: whether it was still pending or already confirmed (then refunded).
    let body = accepted(response, "bookings", &id).await;
    let cancelled = events_of(&app, "booking", &id, "BookingCancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(body["position"], json!(cancelled[0].global_position));
    assert_eq!(cancelled[0].payload["BookingCancelled"]["reason"], "rain");
    let position = cancelled[0].global_position.unwrap();
    let (_, booking) = app
        .get_json(&format!("/api/v1/bookings/{id}?min_position={position}"))
        .await;
    let status = booking["status"].as_str().unwrap_or_default();
    assert!(["CANCELLED", "REFUNDED"].contains(&status), "{booking}");
}
