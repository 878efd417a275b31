//! Deadlines: unpaid orders and bookings expire once, and only while they are open.
//!
//! Payments here never settle within a test (the simulated gateway waits an hour), so whatever
//! the sagas do with these orders they stay open until the deadline job or the test ends them.
//! Assertions hold whether or not a saga moves an order along meanwhile.

use api::configuration::{GatewaySettings, Settings};
use chrono::{DateTime, Utc};
use commands::deadlines::{self, Expired};
use commands::{CommandBus, CommandMetadata};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::{Currency, CustomerId, Money, Quantity, Sku};
use projections::catalog;
use projections::rebuild::{self, Phase, Progress};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{TestApp, eventually, spawn_app_with};
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

const END_EVENTS: [&str; 5] = [
    "OrderStockFailed",
    "OrderCompleted",
    "OrderPaymentFailed",
    "OrderCancelled",
    "OrderExpired",
];

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
    bus.execute::<Order>(&id, place, &CommandMetadata::system("test"))
        .await
        .unwrap();
    id
}

/// `table`'s `due_at` of `id`, if it has a row.
async fn due_at(app: &TestApp, table: &str, id: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(&format!("SELECT due_at FROM {table} WHERE id = $1::uuid"))
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

/// Every order deadline as (id, due_at), by id (positions move on as sagas add events).
async fn deadlines_of(app: &TestApp) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as("SELECT id::text, due_at FROM rm_order_deadlines ORDER BY id::text")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn count_of(app: &TestApp, aggregate_type: &str, id: &str, event_type: &str) -> usize {
    let events = app.events_for(aggregate_type, id).await;
    events.iter().filter(|e| e.event_type == event_type).count()
}

/// Waits until the wall clock is past `at` (a deadline is a point in time, not async work).
async fn wait_past(at: DateTime<Utc>) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(20)).await;
}

#[tokio::test]
async fn an_order_still_open_at_its_deadline_is_expired_exactly_once() {
    // Arrange
    let app = spawn_app_with(unpaid(Duration::from_millis(700))).await;
    app.register_product("DL-MUG", 5).await;
    let id = place_order_over_http(&app, "DL-MUG").await;
    app.catch_up().await;
    let due = due_at(&app, "rm_order_deadlines", &id)
        .await
        .expect("a row");
    assert_eq!(
        app.run_deadlines_once().await,
        Expired::default(),
        "not due yet"
    );

    // Act
    wait_past(due).await;
    let first = app.run_deadlines_once().await;
    let second = app.run_deadlines_once().await;

    // Assert
    assert_eq!((first.orders, first.failed), (1, 0));
    assert_eq!(second, Expired::default(), "a second run issues nothing");
    let events = app.events_for("order", &id).await;
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "OrderExpired")
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].metadata["actor"], "system:deadlines");
    app.catch_up().await;
    assert_eq!(due_at(&app, "rm_order_deadlines", &id).await, None);
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
    let due = due_at(&app, "rm_booking_deadlines", &id)
        .await
        .expect("a row");

    // Act
    wait_past(due).await;
    let first = app.run_deadlines_once().await;
    let second = app.run_deadlines_once().await;

    // Assert
    assert_eq!((first.bookings, first.orders, first.failed), (1, 0, 0));
    assert_eq!(second, Expired::default());
    assert_eq!(count_of(&app, "booking", &id, "BookingExpired").await, 1);
    app.catch_up().await;
    assert_eq!(due_at(&app, "rm_booking_deadlines", &id).await, None);
    let (_, booking) = app.get_json(&format!("/api/v1/bookings/{id}")).await;
    assert_eq!(booking["status"], "EXPIRED");
}

#[tokio::test]
async fn an_order_that_ended_before_its_deadline_is_not_expired() {
    // Arrange: one order cancelled in time, one whose row outlived its end (a lagging
    // projection, simulated by writing the row back by hand).
    let app = spawn_app_with(unpaid(Duration::from_millis(500))).await;
    app.register_product("DL-CUP", 5).await;
    let cancelled = place_order_over_http(&app, "DL-CUP").await;
    let lagging = place_order_over_http(&app, "DL-CUP").await;
    for id in [&cancelled, &lagging] {
        let cancel = OrderCommand::Cancel {
            reason: "changed my mind".to_owned(),
        };
        app.bus
            .execute::<Order>(id, cancel, &CommandMetadata::system("test"))
            .await
            .unwrap();
    }
    app.catch_up().await;
    assert_eq!(due_at(&app, "rm_order_deadlines", &cancelled).await, None);
    sqlx::query(
        "INSERT INTO rm_order_deadlines (id, due_at, position) VALUES ($1::uuid, now(), 1)",
    )
    .bind(&lagging)
    .execute(&app.pool)
    .await
    .unwrap();

    // Act
    wait_past(Utc::now() + chrono::Duration::milliseconds(500)).await;
    let run = app.run_deadlines_once().await;

    // Assert
    assert_eq!(run.orders, 0);
    assert_eq!(run.skipped, 1, "the lagging row was claimed and skipped");
    for id in [&cancelled, &lagging] {
        assert_eq!(count_of(&app, "order", id, "OrderExpired").await, 0);
    }
}

#[tokio::test]
async fn one_run_clears_a_backlog_larger_than_its_batch() {
    // Arrange: 35 orders that fell due while no job ran.
    let app = spawn_app_with(unpaid(Duration::from_secs(900))).await;
    app.register_product("DL-BACKLOG", 100).await;
    let past = Utc::now() - chrono::Duration::seconds(5);
    for _ in 0..35 {
        place_order_due(&app.bus, "DL-BACKLOG", past).await;
    }
    app.catch_up().await;

    // Act: claims of 10 at a time.
    let run = deadlines::run_once(&app.bus, 10).await.unwrap();

    // Assert
    assert_eq!(run.orders + run.skipped, 35);
    assert_eq!(run.failed, 0);
    let expired = app
        .all_events()
        .await
        .iter()
        .filter(|e| e.event_type == "OrderExpired")
        .count();
    assert_eq!(expired, run.orders);
    app.catch_up().await;
    assert!(app.snapshot("rm_order_deadlines").await.is_empty());
}

#[tokio::test]
async fn two_jobs_racing_over_the_same_due_orders_expire_each_exactly_once() {
    // Arrange: 50 due orders; two buses on one pool, as two processes would be.
    let app = spawn_app_with(unpaid(Duration::from_secs(900))).await;
    app.register_product("DL-RACE", 100).await;
    let past = Utc::now() - chrono::Duration::seconds(5);
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(place_order_due(&app.bus, "DL-RACE", past).await);
    }
    app.catch_up().await;
    let other = CommandBus::new(app.pool.clone());

    // Act: small claims, so the two interleave many times.
    let runs = futures::future::join_all(
        [app.bus.clone(), other]
            .map(|bus| tokio::spawn(async move { deadlines::run_once(&bus, 3).await.unwrap() })),
    )
    .await;

    // Assert
    let runs: Vec<Expired> = runs.into_iter().map(Result::unwrap).collect();
    let expired_by_runs: usize = runs.iter().map(|r| r.orders).sum();
    assert!(runs.iter().all(|r| r.failed == 0), "{runs:?}");
    let mut expired_in_store = 0;
    for id in &ids {
        let events = app.events_for("order", id).await;
        let ends: Vec<&str> = events
            .iter()
            .map(|e| e.event_type.as_str())
            .filter(|t| END_EVENTS.contains(t))
            .collect();
        assert_eq!(ends.len(), 1, "order {id} ends exactly once: {ends:?}");
        expired_in_store += usize::from(ends[0] == "OrderExpired");
    }
    assert_eq!(expired_by_runs, expired_in_store);
    assert_eq!(expired_in_store, 50, "every order was still open when due");
    app.catch_up().await;
    assert!(app.snapshot("rm_order_deadlines").await.is_empty());
}

#[tokio::test]
async fn the_deadline_job_sweeps_on_start_runs_on_its_interval_and_stops_on_shutdown() {
    // Arrange: an order that fell due while no job ran.
    let app = spawn_app_with(unpaid(Duration::from_secs(900))).await;
    app.register_product("DL-JOB", 10).await;
    let missed = place_order_due(&app.bus, "DL-JOB", Utc::now()).await;
    app.catch_up().await;

    // Act + Assert: the sweep on start.
    let mut job = deadlines::start(app.bus.clone(), Duration::from_millis(100))
        .await
        .unwrap();
    eventually("the sweep to expire the missed order", || async {
        (count_of(&app, "order", &missed, "OrderExpired").await == 1).then_some(())
    })
    .await;
    // The repeated run, for an order that falls due after the start.
    let later = Utc::now() + chrono::Duration::milliseconds(300);
    let on_time = place_order_due(&app.bus, "DL-JOB", later).await;
    eventually("the repeated run to expire the later order", || async {
        (count_of(&app, "order", &on_time, "OrderExpired").await == 1).then_some(())
    })
    .await;
    // Nothing runs after shutdown.
    job.shutdown().await.unwrap();
    let after = place_order_due(&app.bus, "DL-JOB", Utc::now()).await;
    app.catch_up().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count_of(&app, "order", &after, "OrderExpired").await, 0);
    assert_eq!(count_of(&app, "order", &on_time, "OrderExpired").await, 1);
}

#[tokio::test]
async fn the_application_expires_due_orders_on_its_own() {
    // Arrange: the application's own job every 100 ms.
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
        (count_of(&app, "order", &id, "OrderExpired").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_deadline_models_are_listed_and_rebuild_to_the_open_orders_and_bookings() {
    // Arrange: two open orders, one cancelled.
    let app = spawn_app_with(unpaid(Duration::from_secs(900))).await;
    app.register_product("DL-REBUILD", 10).await;
    let open = [
        place_order_over_http(&app, "DL-REBUILD").await,
        place_order_over_http(&app, "DL-REBUILD").await,
    ];
    let cancelled = place_order_over_http(&app, "DL-REBUILD").await;
    let cancel = OrderCommand::Cancel {
        reason: "no".to_owned(),
    };
    app.bus
        .execute::<Order>(&cancelled, cancel, &CommandMetadata::system("test"))
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
    let mut expected = open.to_vec();
    expected.sort();
    let ids: Vec<String> = rebuilt.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, expected);
    let names: Vec<&str> = projections::status::all(&app.pool)
        .await
        .unwrap()
        .iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"order_deadlines") && names.contains(&"booking_deadlines"));
}
