//! The order and booking sagas end to end over HTTP: first through the simulated gateway, then
//! through Stripe (the real async-stripe client against a fake Stripe, webhooks signed with the
//! real scheme), where each test decides when and how the customer pays.
//!
//! Shared here: placing orders, waiting for a status, and the Stripe side (a service on the
//! fake, its intents, webhook delivery).

use api::configuration::GatewaySettings;
use serde_json::{Value, json};
use std::time::Duration;
use tests::fake_stripe::{FakeIntent, FakeStripe};
use tests::{TestApp, eventually, spawn_app_with};

mod chaos;
mod completed;
mod released;

/// Places an order over HTTP and returns its id.
async fn place_order(app: &TestApp, items: Value) -> String {
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(), "items": items}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_owned()
}

/// Waits until the order's read model shows `status`.
async fn order_reaches(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&format!("order {id} reaches {status}"), || async {
        let (code, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && order["status"] == status).then_some(order)
    })
    .await
}

fn event_types(events: &[tests::StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Through Stripe: the real async-stripe client against the fake, webhooks signed for real.
// ---------------------------------------------------------------------------------------------

/// A service paying through the fake Stripe; `ttl` shortens both deadlines.
async fn spawn_with_stripe(ttl: Option<Duration>) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let uri = fake.uri.clone();
    let app = spawn_app_with(move |s| {
        s.gateway = GatewaySettings::Stripe {
            secret_key: "sk_test_reserva".to_owned(),
            api_base: Some(uri),
        };
        if let Some(ttl) = ttl {
            s.order_ttl = ttl;
            s.booking_ttl = ttl;
        }
    })
    .await;
    (app, fake)
}

/// The intent the saga created for `owner_key` (`order_id` / `booking_id`) `id`.
async fn intent_for(fake: &FakeStripe, owner_key: &str, id: &str) -> FakeIntent {
    eventually(&format!("an intent for {owner_key} {id}"), || async {
        fake.intents()
            .into_iter()
            .find(|i| i.metadata.get(owner_key).map(String::as_str) == Some(id))
    })
    .await
}

/// Delivers `body` as Stripe does: again after `503 payment_not_recorded`, which answers an
/// event that can arrive before the saga has recorded the payment the intent belongs to.
async fn post_webhook(app: &TestApp, body: &str) {
    eventually("the webhook is accepted", || async {
        let response = app.post_stripe_webhook(body).await;
        let status = response.status();
        if status.is_success() {
            return Some(());
        }
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status == 503 && problem["code"] == "payment_not_recorded",
            "{status}: {problem}"
        );
        None
    })
    .await;
}

/// A transaction of the test's own holding `saga_instances` exclusively: the saga issues its
/// commands but cannot store its state until `ROLLBACK` on the returned connection (its own
/// connection, not the server's pool, so it survives a restart of the server).
async fn block_saga_states(app: &TestApp) -> sqlx::PgConnection {
    let mut blocker = app.hold_lock("BEGIN").await;
    sqlx::query("LOCK TABLE saga_instances IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .expect("lock saga_instances");
    blocker
}

async fn stock(app: &TestApp, sku: &str) -> Value {
    let (code, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/{sku}?min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!(code, 200, "{item}");
    item
}

fn count(events: &[tests::StoredEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

async fn register_slot(app: &TestApp, sku: &str, seats: u32) {
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": "Tour", "kind": "time_slot", "quantity": seats,
                    "starts_at": "2027-01-01T09:00:00Z",
                    "unit_price": {"amount": 2500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
}
