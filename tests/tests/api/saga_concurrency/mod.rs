//! The order and booking sagas under contention: many customers race over HTTP for the last
//! units or seats, paying through the simulated gateway (amounts whose minor units end in 02
//! fail). Once every order or booking has ended, the event store itself must show no oversell,
//! every hold resolved exactly once, and the stock balanced.
//!
//! Shared here: the two flows, registering stock, placing concurrently and waiting for every
//! owner to end; `ledger` reads the outcome back from the store.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{Value, json};
use tests::{TestApp, eventually};

mod holds;
mod ledger;
mod overselling;

/// How one kind of owner (orders or bookings) is placed and ends.
struct Flow {
    /// Where it is placed.
    path: &'static str,
    /// Its aggregate type in the store.
    aggregate: &'static str,
    /// Its end events, with the read-model status each leads to.
    ends: &'static [(&'static str, &'static str)],
}

const ORDERS: Flow = Flow {
    path: "/api/v1/orders",
    aggregate: "order",
    ends: &[
        ("OrderCompleted", "COMPLETED"),
        ("OrderStockFailed", "STOCK_FAILED"),
        ("OrderPaymentFailed", "PAYMENT_FAILED"),
        ("OrderCancelled", "CANCELLED"),
        ("OrderExpired", "EXPIRED"),
        ("OrderRefunded", "REFUNDED"),
    ],
};

const BOOKINGS: Flow = Flow {
    path: "/api/v1/bookings",
    aggregate: "booking",
    ends: &[
        ("BookingConfirmed", "CONFIRMED"),
        ("BookingSeatsUnavailable", "SEATS_UNAVAILABLE"),
        ("BookingPaymentFailed", "PAYMENT_FAILED"),
        ("BookingCancelled", "CANCELLED"),
        ("BookingExpired", "EXPIRED"),
        ("BookingRefunded", "REFUNDED"),
    ],
};

impl Flow {
    fn end_events(&self) -> Vec<String> {
        self.ends
            .iter()
            .map(|(event, _)| (*event).to_owned())
            .collect()
    }

    fn is_end(&self, event_type: &str) -> bool {
        self.ends.iter().any(|(event, _)| *event == event_type)
    }

    fn status_after(&self, end_event: &str) -> &'static str {
        self.ends
            .iter()
            .find(|(event, _)| *event == end_event)
            .map(|(_, status)| *status)
            .expect("an end event")
    }
}

/// Registers a stock item over HTTP; panics unless accepted.
async fn register(app: &TestApp, body: Value) {
    let response = app.post("/api/v1/stock-items", &body).await;
    assert_eq!(response.status(), 202, "register {body}");
}

/// A product of `quantity` units at `price` minor units of MXN.
async fn register_priced_product(app: &TestApp, sku: &str, quantity: u32, price: i64) {
    register(
        app,
        json!({"sku": sku, "name": format!("Item {sku}"), "kind": "product",
               "quantity": quantity, "low_stock_threshold": 1,
               "unit_price": {"amount": price, "currency": "MXN"}}),
    )
    .await;
}

/// A time slot of `seats` seats starting in a month.
async fn register_slot(app: &TestApp, sku: &str, seats: u32) {
    let starts_at = chrono::Utc::now() + chrono::Duration::days(30);
    register(
        app,
        json!({"sku": sku, "name": format!("Slot {sku}"), "kind": "time_slot",
               "quantity": seats, "starts_at": starts_at,
               "unit_price": {"amount": 25000, "currency": "MXN"}}),
    )
    .await;
}

/// One order body of one unit per SKU, listed in the order given.
fn order_of(skus: &[&str]) -> Value {
    let items: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "quantity": 1}))
        .collect();
    json!({"customer_id": uuid::Uuid::new_v4(), "items": items})
}

/// POSTs every body at once, one task per customer; every one must answer 202. Returns the
/// ids in the order of `bodies`.
async fn place_concurrently(app: &TestApp, flow: &Flow, bodies: Vec<Value>) -> Vec<String> {
    let url = format!("{}{}", app.address, flow.path);
    let requests = bodies.into_iter().map(|body| {
        let client = app.client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let response = client.post(url).json(&body).send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    });
    let answers: Vec<(u16, Value)> = join_all(requests)
        .await
        .into_iter()
        .map(|task| task.expect("customer task"))
        .collect();
    let refused: Vec<&(u16, Value)> = answers.iter().filter(|(code, _)| *code != 202).collect();
    assert!(
        refused.is_empty(),
        "{} of {} placements were not accepted: {refused:?}",
        refused.len(),
        answers.len()
    );
    answers
        .into_iter()
        .map(|(_, body)| body["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Ids among `ids` with no end event yet (one query on the store).
async fn not_ended(pool: &sqlx::PgPool, flow: &Flow, ids: &[String]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM unnest($2::text[]) AS id \
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = $1 \
                           AND e.aggregate_id = id AND e.event_type = ANY($3)) \
         ORDER BY id",
    )
    .bind(flow.aggregate)
    .bind(ids)
    .bind(flow.end_events())
    .fetch_all(pool)
    .await
    .expect("owners without an end event")
}

/// Waits (bounded, by polling the store) until every one of `ids` has an end event. On time
/// out, panics with the events and saga history of those still open.
async fn wait_until_all_end(app: &TestApp, flow: &'static Flow, ids: &[String]) {
    let pool = app.pool.clone();
    let wanted = ids.to_vec();
    let what = format!("all {} {}s to reach an end", ids.len(), flow.aggregate);
    let waited = tokio::spawn(async move {
        eventually(&what, || {
            let pool = pool.clone();
            let wanted = wanted.clone();
            async move {
                not_ended(&pool, flow, &wanted)
                    .await
                    .is_empty()
                    .then_some(())
            }
        })
        .await;
    })
    .await;
    if waited.is_ok() {
        return;
    }
    let open = not_ended(&app.pool, flow, ids).await;
    let mut report = format!(
        "{} of {} {}s never reached an end:\n",
        open.len(),
        ids.len(),
        flow.aggregate
    );
    let mut by_last: BTreeMap<String, usize> = BTreeMap::new();
    for id in &open {
        let events = app.events_for(flow.aggregate, id).await;
        let last = events.last().map_or("none", |e| e.event_type.as_str());
        *by_last.entry(last.to_owned()).or_default() += 1;
    }
    report.push_str(&format!("last event of each: {by_last:?}\n"));
    for id in open.iter().take(3) {
        let events: Vec<String> = app
            .events_for(flow.aggregate, id)
            .await
            .iter()
            .map(|e| format!("{}#{} {}", e.event_type, e.sequence, e.payload))
            .collect();
        let (code, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
        report.push_str(&format!(
            "{} {id}\n  events: {events:#?}\n  saga ({code}): {saga:#}\n",
            flow.aggregate
        ));
    }
    panic!("{report}");
}
