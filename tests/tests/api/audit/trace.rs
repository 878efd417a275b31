//! `audit trace`: everything one request caused, as a causation tree, through the sagas and a
//! provider's webhook, and nothing another request caused.

use api::configuration::GatewaySettings;
use commands::audit::history::{AuditEvent, TraceNode, TraceRoot, trace};
use domain::{OrderId, Owner, ReservationId, Sku};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tests::fake_stripe::FakeStripe;
use tests::{TestApp, eventually, spawn_app_with};

/// Places an order for `quantity` MUG-1 with `X-Correlation-ID: correlation`; returns its id.
async fn place(app: &TestApp, correlation: &str, quantity: u32) -> String {
    let response = app
        .client
        .post(format!("{}/api/v1/orders", app.address))
        .header("x-correlation-id", correlation)
        .json(&json!({"customer_id": uuid::Uuid::new_v4(),
                      "items": [{"sku": "MUG-1", "quantity": quantity}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-correlation-id"], correlation);
    let accepted: Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_owned()
}

/// The customer pays order `id` at the fake Stripe as soon as the intent exists, and Stripe
/// tells the service at once: possibly before the saga's `PaymentCreated` has committed, which
/// the service answers `503 payment_not_recorded` and Stripe redelivers. Returns the payment
/// id once the order's saga has completed.
async fn pay(app: &TestApp, fake: &FakeStripe, id: &str) -> String {
    let intent = eventually(&format!("an intent for order {id}"), || async {
        fake.intents()
            .into_iter()
            .find(|i| i.metadata.get("order_id").map(String::as_str) == Some(id))
    })
    .await;
    let body = fake.succeed(&intent.id);
    eventually("the webhook is accepted", || async {
        let response = app.post_stripe_webhook(&body).await;
        let status = response.status();
        if status.is_success() {
            return Some(());
        }
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status == 503 && problem["code"] == "payment_not_recorded");
        None
    })
    .await;
    eventually(&format!("the saga of order {id} completes"), || async {
        let (_, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
        (saga["state"] == "completed").then_some(())
    })
    .await;
    intent.metadata["payment_id"].clone()
}

/// `type/id/sequence`, as causation ids name events.
fn key(event: &AuditEvent) -> String {
    format!(
        "{}/{}/{}",
        event.aggregate_type, event.aggregate_id, event.sequence
    )
}

/// Every node of the tree with its parent's key (`None` under the root).
fn flatten<'a>(
    nodes: &'a [TraceNode],
    parent: Option<String>,
    out: &mut Vec<(Option<String>, &'a AuditEvent)>,
) {
    for node in nodes {
        out.push((parent.clone(), &node.event));
        flatten(&node.caused, Some(key(&node.event)), out);
    }
}

/// The stock events of `order`'s hold on MUG-1 and every event of the order and its payment.
async fn caused_by(app: &TestApp, order: &str, payment: &str) -> BTreeSet<String> {
    let owner = Owner::Order(OrderId(order.parse().unwrap()));
    let hold = ReservationId::for_owner(owner, &Sku::parse("MUG-1").unwrap()).to_string();
    let mut events = app.events_for("order", order).await;
    events.extend(app.events_for("payment", payment).await);
    events.extend(
        app.events_for("stock_item", "MUG-1")
            .await
            .into_iter()
            .filter(|e| e.payload.to_string().contains(&hold)),
    );
    events
        .iter()
        .map(|e| format!("{}/{}/{}", e.aggregate_type, e.aggregate_id, e.sequence))
        .collect()
}

#[tokio::test]
async fn the_trace_of_an_order_request_holds_its_order_stock_payment_and_webhook_events_only() {
    // Arrange: paying through the fake Stripe, so the payment's success is a signed webhook.
    let fake = FakeStripe::start().await;
    let uri = fake.uri.clone();
    let app = spawn_app_with(move |s| {
        s.gateway = GatewaySettings::Stripe {
            secret_key: "sk_test_reserva".to_owned(),
            api_base: Some(uri),
        };
    })
    .await;
    app.register_product("MUG-1", 10).await;

    // Act: two requests at once on the same SKU, each paid.
    let (mine, other) = futures::join!(
        place(&app, "checkout-mine", 2),
        place(&app, "checkout-other", 3)
    );
    let my_payment = pay(&app, &fake, &mine).await;
    let other_payment = pay(&app, &fake, &other).await;
    let roots: Vec<TraceRoot> = trace(&app.pool, "checkout-mine").await.unwrap();

    // Assert: one root, the request, which caused the order's first event.
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = &roots[0];
    assert_eq!(root.actor.as_deref(), Some("anonymous"));
    assert_eq!(root.caused.len(), 1, "{root:#?}");
    let placed = &root.caused[0].event;
    assert_eq!(
        (placed.aggregate_id.as_str(), placed.sequence),
        (mine.as_str(), 1)
    );
    assert_eq!(placed.event_type, "OrderPlaced");
    assert_eq!(root.cause, placed.metadata["request_id"]);

    // …exactly the events of my order, my payment and my hold on the shared SKU…
    let mut nodes = Vec::new();
    flatten(&root.caused, None, &mut nodes);
    let traced: BTreeSet<String> = nodes.iter().map(|(_, e)| key(e)).collect();
    assert_eq!(traced.len(), nodes.len(), "each event once");
    assert_eq!(traced, caused_by(&app, &mine, &my_payment).await);
    for (_, event) in &nodes {
        assert_eq!(
            event.metadata["correlation_id"], "checkout-mine",
            "{event:?}"
        );
        assert_ne!(event.aggregate_id, other);
        assert_ne!(event.aggregate_id, other_payment);
    }
    assert!(
        traced.is_disjoint(&caused_by(&app, &other, &other_payment).await),
        "nothing of the other request"
    );

    // …each under the event it names as its cause…
    for (parent, event) in &nodes {
        if let Some(parent) = parent {
            assert_eq!(
                &event.metadata["causation_id"],
                parent.as_str(),
                "{event:?}"
            );
        }
    }
    let types: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(_, e)| (e.aggregate_type.as_str(), e.event_type.as_str()))
        .collect();
    for expected in [
        ("order", "OrderStockReserved"),
        ("order", "OrderPaymentRequested"),
        ("order", "OrderCompleted"),
        ("stock_item", "StockReserved"),
        ("stock_item", "ReservationCommitted"),
        ("payment", "PaymentCreated"),
    ] {
        assert!(types.contains(&expected), "{expected:?} in {types:?}");
        let (_, event) = nodes
            .iter()
            .find(|(_, e)| (e.aggregate_type.as_str(), e.event_type.as_str()) == expected)
            .unwrap();
        assert_eq!(event.metadata["actor"], "saga:order_saga", "{event:?}");
    }

    // …and the webhook's payment event under the payment's first event.
    let (parent, succeeded) = nodes
        .iter()
        .find(|(_, e)| e.event_type == "PaymentSucceeded")
        .expect("the webhook's event is in the trace");
    assert_eq!(succeeded.aggregate_id, my_payment);
    assert_eq!(succeeded.metadata["actor"], "stripe");
    assert_eq!(
        parent.as_deref(),
        Some(format!("payment/{my_payment}/1").as_str())
    );

    let theirs = trace(&app.pool, "checkout-other").await.unwrap();
    let mut their_nodes = Vec::new();
    flatten(&theirs[0].caused, None, &mut their_nodes);
    assert_eq!(theirs.len(), 1);
    assert!(their_nodes.iter().all(|(_, e)| !traced.contains(&key(e))));
    assert!(their_nodes.iter().any(|(_, e)| e.aggregate_id == other));
}
