//! Expiry through the application: once, on the job's own schedule, open orders' deadlines only.

use super::{
    accepted_id, count_of, due_at, expiries, meta, place_order_over_http, step_until_expired,
    unpaid, wait_past,
};
use chrono::{DateTime, Utc};
use domain::order::{Order, OrderCommand};
use serde_json::json;
use std::time::Duration;
use tests::{TestApp, eventually, spawn_app_with};
use uuid::Uuid;

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
        by: domain::order::Canceller::Customer,
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
