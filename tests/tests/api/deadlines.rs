//! Deadlines: unpaid orders and bookings expire once, and only while they are open.
//!
//! Tests through the application keep payments from settling (the simulated gateway waits an
//! hour), so whatever the sagas do the orders stay open until the deadline job ends them, and
//! their assertions hold whether or not a saga moves an order along meanwhile. Tests that
//! count what one run did use a bare database with only the sagas running (they keep the
//! deadlines), so the runs they start are the only ones.

use api::configuration::{GatewaySettings, Settings};
use chrono::{DateTime, Utc};
use commands::deadlines::{self, Expired};
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
use tests::{TestApp, TestDatabase, eventually, register_product_command, spawn_app_with};
use uuid::Uuid;

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

#[tokio::test]
async fn an_order_still_open_at_its_deadline_is_expired_exactly_once() {
    // Arrange
    let app = spawn_app_with(unpaid(Duration::from_millis(700))).await;
    app.register_product("DL-MUG", 5).await;
    let id = place_order_over_http(&app, "DL-MUG").await;
    app.catch_up().await;
    let due = eventually("the saga to keep the order's deadline", || async {
        due_at(&app.pool, &id).await
    })
    .await;

    // Act
    wait_past(due).await;
    step_until_expired(&app, "order", &id, "OrderExpired").await;
    let before = expiries(&app.pool).await;
    let again = app.run_deadlines_once().await;

    // Assert
    assert_eq!((again.orders, again.bookings), (0, 0));
    assert_eq!(
        expiries(&app.pool).await,
        before,
        "a later run issues nothing"
    );
    let events = app.events_for("order", &id).await;
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "OrderExpired")
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].metadata["actor"], "system:deadlines");
    app.catch_up().await;
    eventually("the saga to drop the deadline", || async {
        due_at(&app.pool, &id).await.is_none().then_some(())
    })
    .await;
    let (_, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["status"], "EXPIRED");
}

#[tokio::test]
async fn a_booking_still_pending_payment_at_its_deadline_is_expired_exactly_once() {
    // Arrange
    let app = spawn_app_with(unpaid(Duration::from_millis(700))).await;
    let slot = json!({"sku": "DL-TOUR", "name": "Tour", "kind": "time_slot", "quantity": 10,
        "starts_at": "2030-12-01T09:00:00Z", "unit_price": {"amount": 25000, "currency": "MXN"}});
    assert_eq!(app.post("/api/v1/stock-items", &slot).await.status(), 202);
    let body = json!({"customer_id": Uuid::new_v4(), "slot_sku": "DL-TOUR", "guests": 2});
    let id = accepted_id(app.post("/api/v1/bookings", &body).await).await;
    app.catch_up().await;
    let due = eventually("the saga to keep the booking's deadline", || async {
        due_at(&app.pool, &id).await
    })
    .await;

    // Act
    wait_past(due).await;
    step_until_expired(&app, "booking", &id, "BookingExpired").await;
    let before = expiries(&app.pool).await;
    let again = app.run_deadlines_once().await;

    // Assert
    assert_eq!((again.orders, again.bookings), (0, 0));
    assert_eq!(
        expiries(&app.pool).await,
        before,
        "a later run issues nothing"
    );
    assert_eq!(
        count_of(&app.pool, "booking", &id, "BookingExpired").await,
        1
    );
    assert_eq!(count_of(&app.pool, "order", &id, "OrderExpired").await, 0);
    app.catch_up().await;
    eventually("the saga to drop the deadline", || async {
        due_at(&app.pool, &id).await.is_none().then_some(())
    })
    .await;
    let (_, booking) = app.get_json(&format!("/api/v1/bookings/{id}")).await;
    assert_eq!(booking["status"], "EXPIRED");
}

#[tokio::test]
async fn the_application_expires_due_orders_on_its_own() {
    // Arrange: the application's own job as often as it runs (every second).
    let app = spawn_app_with(|s| {
        unpaid(Duration::from_millis(300))(s);
        s.deadline_interval = Duration::from_millis(100);
    })
    .await;
    app.register_product("DL-SELF", 5).await;

    // Act
    let id = place_order_over_http(&app, "DL-SELF").await;

    // Assert
    eventually("the application's job to expire the order", || async {
        (count_of(&app.pool, "order", &id, "OrderExpired").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_order_that_ended_before_its_deadline_is_not_expired() {
    // Arrange: one order cancelled in time, one whose deadline outlived its end (a lagging
    // saga, simulated by writing the deadline back by hand).
    let bare = Bare::new().await;
    let due = seconds_from_now(1);
    let cancelled = place_order_due(&bare.bus, "DL-CUP", due).await;
    let lagging = place_order_due(&bare.bus, "DL-CUP", due).await;
    for id in [&cancelled, &lagging] {
        let cancel = OrderCommand::Cancel {
            reason: "changed my mind".to_owned(),
        };
        bare.bus
            .execute::<Order>(id, cancel, &meta())
            .await
            .unwrap();
    }
    bare.catch_up().await;
    assert_eq!(due_at(bare.pool(), &cancelled).await, None);
    sqlx::query("UPDATE saga_instances SET due_at = now() WHERE id = $1::uuid")
        .bind(&lagging)
        .execute(bare.pool())
        .await
        .unwrap();

    // Act
    wait_past(due).await;
    let run = deadlines::run_once(&bare.bus, 100).await.unwrap();

    // Assert
    assert_eq!(
        run,
        Expired {
            skipped: 1,
            ..Expired::default()
        },
        "the lagging deadline was claimed and skipped"
    );
    for id in [&cancelled, &lagging] {
        assert_eq!(count_of(bare.pool(), "order", id, "OrderExpired").await, 0);
    }
}

#[tokio::test]
async fn one_run_clears_a_backlog_larger_than_its_batch_and_leaves_what_is_not_due() {
    // Arrange: 35 orders that fell due while no job ran, 5 due in an hour.
    let bare = Bare::new().await;
    let past = seconds_from_now(-5);
    for _ in 0..35 {
        place_order_due(&bare.bus, "DL-BACKLOG", past).await;
    }
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(place_order_due(&bare.bus, "DL-BACKLOG", seconds_from_now(3600)).await);
    }
    bare.catch_up().await;

    // Act: claims of 10 at a time.
    let run = deadlines::run_once(&bare.bus, 10).await.unwrap();

    // Assert
    assert_eq!(
        run,
        Expired {
            orders: 35,
            ..Expired::default()
        }
    );
    bare.catch_up().await;
    let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT id::text, claimed_until FROM saga_instances WHERE due_at IS NOT NULL ORDER BY 1",
    )
    .fetch_all(bare.pool())
    .await
    .unwrap();
    later.sort();
    assert_eq!(
        rows,
        later.into_iter().map(|id| (id, None)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn two_jobs_racing_over_the_same_due_orders_expire_each_exactly_once() {
    // Arrange: 50 due orders; two buses on one pool, as two processes would be.
    let bare = Bare::new().await;
    let past = seconds_from_now(-5);
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(place_order_due(&bare.bus, "DL-RACE", past).await);
    }
    bare.catch_up().await;
    let buses = [bare.bus.clone(), CommandBus::new(bare.pool().clone())];

    // Act: small claims, so the two interleave many times.
    let runs = futures::future::join_all(
        buses.map(|bus| tokio::spawn(async move { deadlines::run_once(&bus, 3).await.unwrap() })),
    )
    .await;

    // Assert: every order claimed by one of them, and expired once.
    let runs: Vec<Expired> = runs.into_iter().map(Result::unwrap).collect();
    assert_eq!(runs.iter().map(|r| r.orders).sum::<usize>(), 50, "{runs:?}");
    assert!(
        runs.iter().all(|r| (r.skipped, r.failed) == (0, 0)),
        "{runs:?}"
    );
    for id in &ids {
        assert_eq!(count_of(bare.pool(), "order", id, "OrderExpired").await, 1);
    }
    bare.catch_up().await;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_instances WHERE due_at IS NOT NULL")
            .fetch_one(bare.pool())
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_deadline_job_sweeps_on_start_runs_on_its_interval_and_stops_on_shutdown() {
    // Arrange: an order that fell due while no job ran.
    let bare = Bare::new().await;
    let pool = bare.pool();
    let missed = place_order_due(&bare.bus, "DL-JOB", Utc::now()).await;
    bare.catch_up().await;

    // Act + Assert: the sweep on start.
    let mut job = deadlines::start(bare.bus.clone(), Duration::from_millis(100))
        .await
        .unwrap();
    eventually("the sweep to expire the missed order", || async {
        (count_of(pool, "order", &missed, "OrderExpired").await == 1).then_some(())
    })
    .await;
    // A scheduled run, for an order that falls due after the start.
    let on_time = place_order_due(&bare.bus, "DL-JOB", seconds_from_now(1)).await;
    eventually("a scheduled run to expire the later order", || async {
        (count_of(pool, "order", &on_time, "OrderExpired").await == 1).then_some(())
    })
    .await;
    // Nothing runs after shutdown (the job ticks every second).
    job.shutdown().await.unwrap();
    let after = place_order_due(&bare.bus, "DL-JOB", Utc::now()).await;
    bare.catch_up().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count_of(pool, "order", &after, "OrderExpired").await, 0);
}

/// Every order deadline as (id, due_at), by id.
async fn deadlines_of(app: &TestApp) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT id::text, due_at FROM saga_instances \
         WHERE saga_type = 'order_saga' AND due_at IS NOT NULL ORDER BY id::text",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_deadlines_are_those_of_the_open_orders_as_their_sagas_keep_them() {
    // Arrange: two open orders, one cancelled.
    let app = spawn_app_with(unpaid(Duration::from_secs(900))).await;
    app.register_product("DL-OPEN", 10).await;
    let mut open = [
        place_order_over_http(&app, "DL-OPEN").await,
        place_order_over_http(&app, "DL-OPEN").await,
    ];
    let cancelled = place_order_over_http(&app, "DL-OPEN").await;

    // Act
    let cancel = OrderCommand::Cancel {
        reason: "no".to_owned(),
    };
    app.bus
        .execute::<Order>(&cancelled, cancel, &meta())
        .await
        .unwrap();

    // Assert: each open order's deadline is its own expiry, and the cancelled one has none.
    open.sort();
    let deadlines = eventually(
        "the sagas to keep exactly the open orders' deadlines",
        || async {
            let deadlines = deadlines_of(&app).await;
            let ids: Vec<&String> = deadlines.iter().map(|(id, _)| id).collect();
            (ids == open.iter().collect::<Vec<_>>()).then_some(deadlines)
        },
    )
    .await;
    for (id, due) in deadlines {
        let placed = &app.events_for("order", &id).await[0];
        let expires_at: DateTime<Utc> =
            serde_json::from_value(placed.payload["OrderPlaced"]["expires_at"].clone()).unwrap();
        assert!((due - expires_at).num_milliseconds().abs() < 1, "{id}");
    }
}
