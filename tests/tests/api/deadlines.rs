//! Deadlines: unpaid orders and bookings expire once, and only while they are open.
//!
//! Tests through the application keep payments from settling (the simulated gateway waits an
//! hour), so whatever the sagas do the orders stay open until the deadline job ends them, and
//! their assertions hold whether or not a saga moves an order along meanwhile. Tests that
//! count what one run did use a bare database with only the read models running, so the runs
//! they start are the only ones.

use api::configuration::{GatewaySettings, Settings};
use chrono::{DateTime, Utc};
use commands::deadlines::{self, Expired, ORDER_DEADLINES};
use commands::{CommandBus, CommandMetadata};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::{Currency, CustomerId, Money, Quantity, Sku};
use feed::SubscriptionOptions;
use projections::catalog;
use projections::rebuild::{self, Phase, Progress};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use tests::{TestApp, TestDatabase, eventually, spawn_app_with};
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

/// A migrated database with the read models running and nothing else: no server, no sagas,
/// no application deadline job.
struct Bare {
    bus: CommandBus,
    _projections: catalog::Running,
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
        let options = SubscriptionOptions::default();
        let projections = catalog::start(&database.pool, bus.feed_signal(), &options);
        Self {
            bus,
            _projections: projections,
            database,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.database.pool
    }

    /// Waits until the order deadlines have handled every event so far.
    async fn catch_up(&self) {
        let last: i64 = sqlx::query_scalar(
            "SELECT global_position FROM events \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_one(self.pool())
        .await
        .unwrap();
        let timeout = Duration::from_secs(60);
        projections::wait::until_reached(self.pool(), None, "order_deadlines", last, timeout)
            .await
            .unwrap();
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

/// Places an order of one `sku` through `bus`, due at `expires_at`; its id.
async fn place_order_due(bus: &CommandBus, sku: &str, expires_at: DateTime<Utc>) -> String {
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

/// `table`'s `due_at` of `id`, if it has a row.
async fn due_at(pool: &PgPool, table: &str, id: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(&format!("SELECT due_at FROM {table} WHERE id = $1::uuid"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
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

/// Steps the application's deadline job until `id` has an `expired` event (a run skips a row
/// the projector is rewriting at that instant; the next run takes it).
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
    let due = due_at(&app.pool, ORDER_DEADLINES, &id)
        .await
        .expect("a row");

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
    assert_eq!(due_at(&app.pool, ORDER_DEADLINES, &id).await, None);
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
    let due = due_at(&app.pool, "rm_booking_deadlines", &id).await;

    // Act
    wait_past(due.expect("a row")).await;
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
    assert_eq!(due_at(&app.pool, "rm_booking_deadlines", &id).await, None);
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
    // Arrange: one order cancelled in time, one whose row outlived its end (a lagging
    // projection, simulated by writing the row back by hand).
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
    assert_eq!(due_at(bare.pool(), ORDER_DEADLINES, &cancelled).await, None);
    sqlx::query(
        "INSERT INTO rm_order_deadlines (id, due_at, position) VALUES ($1::uuid, now(), 1)",
    )
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
        "the lagging row was claimed and skipped"
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
    let rows: Vec<(String, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT id::text, claimed_until FROM rm_order_deadlines ORDER BY 1")
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
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_order_deadlines")
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

/// Every order deadline as (id, due_at), by id (positions move on as sagas add events).
async fn deadlines_of(app: &TestApp) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as("SELECT id::text, due_at FROM rm_order_deadlines ORDER BY id::text")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_deadline_models_are_listed_and_rebuild_to_the_open_orders() {
    // Arrange: two open orders, one cancelled.
    let app = spawn_app_with(unpaid(Duration::from_secs(900))).await;
    app.register_product("DL-REBUILD", 10).await;
    let mut open = vec![
        place_order_over_http(&app, "DL-REBUILD").await,
        place_order_over_http(&app, "DL-REBUILD").await,
    ];
    let cancelled = place_order_over_http(&app, "DL-REBUILD").await;
    let cancel = OrderCommand::Cancel {
        reason: "no".to_owned(),
    };
    app.bus
        .execute::<Order>(&cancelled, cancel, &meta())
        .await
        .unwrap();
    app.catch_up().await;
    let live = deadlines_of(&app).await;

    // Act
    for name in ["order_deadlines", "booking_deadlines"] {
        let projection = catalog::find(name).expect("registered");
        let (progress, _) = tokio::sync::watch::channel(Progress {
            phase: Phase::Preparing,
            applied: 0,
            total: 0,
        });
        rebuild::rebuild(&app.pool, projection, &progress)
            .await
            .unwrap_or_else(|e| panic!("rebuild {name}: {e}"));
    }

    // Assert
    let rebuilt = deadlines_of(&app).await;
    assert_eq!(rebuilt, live);
    open.sort();
    let ids: Vec<String> = rebuilt.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, open);
    let names: Vec<&str> = projections::status::all(&app.pool)
        .await
        .unwrap()
        .iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"order_deadlines") && names.contains(&"booking_deadlines"));
}
