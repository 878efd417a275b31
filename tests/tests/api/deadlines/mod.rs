//! Deadlines: unpaid orders and bookings expire once, and only while they are open.
//!
//! Tests through the application keep payments from settling (the simulated gateway waits an
//! hour), so whatever the sagas do the orders stay open until the deadline job ends them, and
//! their assertions hold whether or not a saga moves an order along meanwhile. Tests that
//! count what one run did use a bare database with only the sagas running (they keep the
//! deadlines), so the runs they start are the only ones.
//!
//! Shared here: the unpaid settings, the bare database, placing orders, and reading deadlines
//! and expiries from the store.

use api::configuration::{GatewaySettings, Settings};
use chrono::{DateTime, Utc};
use commands::payment_gateway::{PaymentGateway, SimulatedGateway};
use commands::sagas::{BookingSaga, OrderSaga, SagaRunner};
use commands::{CommandBus, CommandMetadata};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::stock_item::StockItem;
use domain::{Currency, CustomerId, Money, Quantity, Sku};
use feed::{Subscription, SubscriptionHandle, SubscriptionOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tests::{TestApp, TestDatabase, register_product_command};
use uuid::Uuid;

mod expiry;
mod job;

/// Short TTLs, payments that never settle, and the application's own job out of the way
/// (tests step it with `run_deadlines_once`).
fn unpaid(ttl: Duration) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.order_ttl = ttl;
        s.booking_ttl = ttl;
        s.gateway = GatewaySettings::Simulated {
            delay: Duration::from_secs(3600),
        };
        s.deadline_interval = Duration::from_secs(3600);
    }
}

/// A migrated database with the order and booking sagas running (paying through a gateway
/// that never settles) and nothing else: no server, no read models, no application deadline
/// job.
struct Bare {
    bus: CommandBus,
    _sagas: [SubscriptionHandle; 2],
    database: TestDatabase,
}

impl Bare {
    async fn new() -> Self {
        let database = tests::fresh_database(16).await;
        commands::MIGRATOR
            .run(&database.pool)
            .await
            .expect("migrate");
        let bus = CommandBus::new(database.pool.clone());
        let gateway: Arc<dyn PaymentGateway> = Arc::new(SimulatedGateway::new(
            "http://127.0.0.1:9/webhooks/stripe".to_owned(),
            tests::WEBHOOK_SECRET.to_owned(),
            Duration::from_secs(3600),
        ));
        let saga = |handler: Arc<dyn feed::Handler>| {
            let options = SubscriptionOptions::default();
            Subscription::new(
                handler,
                database.pool.clone(),
                bus.feed_signal().clone(),
                options,
            )
            .spawn()
        };
        let sagas = [
            saga(Arc::new(SagaRunner::<OrderSaga>::new(
                bus.clone(),
                gateway.clone(),
            ))),
            saga(Arc::new(SagaRunner::<BookingSaga>::new(
                bus.clone(),
                gateway,
            ))),
        ];
        Self {
            bus,
            _sagas: sagas,
            database,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.database.pool
    }

    /// Waits until the sagas have handled every event so far, and the events they appended
    /// meanwhile, until they append no more.
    async fn catch_up(&self) {
        let mut last = 0;
        loop {
            let end: i64 = sqlx::query_scalar(
                "SELECT global_position FROM events \
                 ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
            )
            .fetch_one(self.pool())
            .await
            .unwrap();
            if end == last {
                return;
            }
            for saga in ["order_saga", "booking_saga"] {
                let timeout = Duration::from_secs(60);
                projections::wait::until_reached(self.pool(), None, saga, end, timeout)
                    .await
                    .unwrap();
            }
            last = end;
        }
    }
}

async fn accepted_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn place_order_over_http(app: &TestApp, sku: &str) -> String {
    let body = json!({"customer_id": Uuid::new_v4(), "items": [{"sku": sku, "quantity": 1}]});
    accepted_id(app.post("/api/v1/orders", &body).await).await
}

/// Places an order of one `sku` (registered with plenty of stock if it is new) through
/// `bus`, due at `expires_at`; its id.
async fn place_order_due(bus: &CommandBus, sku: &str, expires_at: DateTime<Utc>) -> String {
    // A second registration is refused, which is fine.
    let _ = bus
        .execute::<StockItem>(sku, register_product_command(sku, 1_000, 0), &meta())
        .await;
    let id = Uuid::new_v4().to_string();
    let price = Money::new(1500, Currency::parse("MXN").unwrap()).unwrap();
    let place = OrderCommand::Place {
        customer_id: CustomerId(Uuid::new_v4()),
        items: vec![OrderItem {
            sku: Sku::parse(sku).unwrap(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: price,
        }],
        expires_at,
    };
    bus.execute::<Order>(&id, place, &meta()).await.unwrap();
    id
}

fn meta() -> CommandMetadata {
    CommandMetadata::system("test")
}

fn seconds_from_now(seconds: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(seconds)
}

/// The `due_at` of the saga of order or booking `id`, if it has one.
async fn due_at(pool: &PgPool, id: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT due_at FROM saga_instances WHERE id = $1::uuid")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
        .flatten()
}

/// How many events of `event_type` the aggregate has.
async fn count_of(pool: &PgPool, aggregate_type: &str, id: &str, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(event_type)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// How many expiries the store holds, of every order and booking.
async fn expiries(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('OrderExpired', 'BookingExpired')",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until the wall clock is past `at` (a deadline is a point in time, not async work).
async fn wait_past(at: DateTime<Utc>) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(20)).await;
}

/// Steps the application's deadline job until `id` has an `expired` event (a run skips a saga
/// its runner is rewriting at that instant; the next run takes it).
async fn step_until_expired(app: &TestApp, aggregate_type: &str, id: &str, expired: &str) {
    for _ in 0..200 {
        app.run_deadlines_once().await;
        if count_of(&app.pool, aggregate_type, id, expired).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{aggregate_type} {id} did not expire");
}
