//! Inventory and time slots over HTTP.

use serde_json::{Value, json};
use tests::spawn_app;

#[tokio::test]
async fn registering_and_restocking_a_product_shows_in_its_stock_level() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "mug-001", "name": "Clay mug", "kind": "product", "quantity": 5,
                    "low_stock_threshold": 2, "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["location"],
        "/api/v1/stock-items/MUG-001"
    );

    app.post(
        "/api/v1/stock-items/MUG-001/restock",
        &json!({"quantity": 3}),
    )
    .await;
    let head = app.head().await;
    let mut item: Value = app
        .get_at("/api/v1/stock-items/mug-001", head)
        .await
        .json()
        .await
        .unwrap();
    let fields = item.as_object_mut().unwrap();
    assert!(fields.remove("updated_at").is_some());
    assert_eq!(fields.remove("position"), Some(json!(head)));

    assert_eq!(
        item,
        json!({"sku": "MUG-001", "name": "Clay mug", "kind": "product", "on_hand": 8,
               "reserved": 0, "available": 8, "low_stock": false, "low_stock_threshold": 2,
               "unit_price": {"amount": 1500, "currency": "MXN"}})
    );
}

#[tokio::test]
async fn a_time_slot_keeps_its_start_and_seats() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "TOUR-0900", "name": "Walking tour", "kind": "time_slot",
                    "quantity": 20, "starts_at": "2026-12-01T10:00:00Z",
                    "unit_price": {"amount": 50000, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);

    let slot: Value = app
        .get_at("/api/v1/stock-items/TOUR-0900", app.head().await)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(slot["kind"], "time_slot");
    assert_eq!(slot["starts_at"], "2026-12-01T10:00:00Z");
    assert_eq!(slot["available"], 20);
}

#[tokio::test]
async fn registering_a_sku_twice_is_a_conflict_and_writes_nothing() {
    let app = spawn_app().await;
    app.register_product("TWICE", 1).await;

    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "twice", "name": "Again", "kind": "product", "quantity": 9,
                    "unit_price": {"amount": 1, "currency": "MXN"}}),
        )
        .await;

    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "stock_item_exists");
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn an_unknown_sku_is_404_problem_json() {
    let app = spawn_app().await;

    let response = app.get("/api/v1/stock-items/NOPE-1").await;

    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "stock_item_not_found");
    let restock = app
        .post(
            "/api/v1/stock-items/NOPE-1/restock",
            &json!({"quantity": 1}),
        )
        .await;
    assert_eq!(restock.status(), 404);
    assert_eq!(app.event_count().await, 0);
}
