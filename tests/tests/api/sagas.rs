//! The order and booking sagas end to end over HTTP, paying through the simulated gateway
//! (amounts whose minor units end in 02 fail).

use serde_json::{Value, json};
use tests::{TestApp, eventually, spawn_app};

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

#[tokio::test]
async fn an_order_is_reserved_paid_and_completed_by_its_saga() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    app.register_product("CUP-1", 5).await;

    // Act
    let id = place_order(
        &app,
        json!([{"sku": "MUG-1", "quantity": 2}, {"sku": "CUP-1", "quantity": 1}]),
    )
    .await;

    // Assert
    let order = order_reaches(&app, &id, "COMPLETED").await;
    assert_eq!(order["payment"]["status"], "succeeded");
    assert_eq!(
        event_types(&app.events_for("order", &id).await),
        [
            "OrderPlaced",
            "OrderStockReserved",
            "OrderPaymentRequested",
            "OrderCompleted"
        ]
    );
    for (sku, left) in [("MUG-1", 3), ("CUP-1", 4)] {
        let (_, item) = app
            .get_json(&format!("/api/v1/stock-items/{sku}?min_position={}", app.head().await))
            .await;
        assert_eq!(item["on_hand"], left, "{item}");
        assert_eq!(item["reserved"], 0, "{item}");
    }
    let (code, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(code, 200, "{saga}");
    assert_eq!(saga["state"], "completed");
    assert!(saga["history"].as_array().unwrap().len() >= 2, "{saga}");
}
