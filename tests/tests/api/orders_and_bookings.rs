//! Orders and bookings are recorded as placed; with no saga running nothing else happens to
//! them (the sagas are tested in `sagas`).

use serde_json::{Value, json};
use tests::spawn_app_without_sagas;

#[tokio::test]
async fn placing_an_order_records_it_started_with_priced_items() {
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 5).await;
    app.register_product("CUP-1", 5).await;
    let customer = uuid::Uuid::new_v4();

    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": customer,
                    "items": [{"sku": "MUG-1", "quantity": 2}, {"sku": "cup-1", "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    let order: Value = app
        .get_at(&format!("/api/v1/orders/{id}"), app.head().await)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(order["status"], "STARTED");
    assert_eq!(order["customer_id"], customer.to_string());
    assert_eq!(order["total"], json!({"amount": 4500, "currency": "MXN"}));
    assert_eq!(order["items"][1]["sku"], "CUP-1");
    let events = app.events_for("order", id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].global_position, accepted["position"].as_i64());
    assert!(
        app.all_events()
            .await
            .iter()
            .all(|e| e.event_type != "StockReserved"),
        "placing an order reserves nothing by itself"
    );
}

#[tokio::test]
async fn placing_a_booking_on_a_time_slot_records_it_pending_payment() {
    let app = spawn_app_without_sagas().await;
    app.post(
        "/api/v1/stock-items",
        &json!({"sku": "TOUR-1", "name": "Tour", "kind": "time_slot", "quantity": 20,
                "starts_at": "2026-12-01T09:00:00Z", "unit_price": {"amount": 25000, "currency": "MXN"}}),
    )
    .await;

    let response = app
        .post(
            "/api/v1/bookings",
            &json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "TOUR-1", "guests": 2}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let booking: Value = app
        .get_at(&format!("/api/v1/bookings/{id}"), app.head().await)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(booking["status"], "PENDING_PAYMENT");
    assert_eq!(booking["guests"], 2);
    assert_eq!(
        booking["total"],
        json!({"amount": 50000, "currency": "MXN"})
    );
}

#[tokio::test]
async fn a_booking_on_a_product_or_unknown_slot_is_refused_and_writes_nothing() {
    let app = spawn_app_without_sagas().await;
    app.register_product("NOT-A-SLOT", 5).await;
    let before = app.event_count().await;

    for (slot, code) in [("NOT-A-SLOT", "not_a_time_slot"), ("GHOST", "unknown_slot")] {
        let response = app
            .post(
                "/api/v1/bookings",
                &json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": slot, "guests": 1}),
            )
            .await;
        assert_eq!(response.status(), 422);
        assert_eq!(response.json::<Value>().await.unwrap()["code"], code);
    }
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn unknown_order_and_booking_ids_are_404() {
    let app = spawn_app_without_sagas().await;
    let id = uuid::Uuid::new_v4();
    assert_eq!(app.get(&format!("/api/v1/orders/{id}")).await.status(), 404);
    assert_eq!(
        app.get(&format!("/api/v1/bookings/{id}")).await.status(),
        404
    );
    assert_eq!(app.get("/api/v1/orders/not-a-uuid").await.status(), 400);
}
