//! What every stored event carries.

use serde_json::json;
use tests::{spawn_app, spawn_app_without_sagas};

#[tokio::test]
async fn every_event_carries_correlation_causation_actor_and_request_ids() {
    // Arrange: no saga, whose own events (a reservation for the order) would race the count.
    let app = spawn_app_without_sagas().await;

    // Act: one request with a correlation id, one without.
    let response = app
        .client
        .post(format!("{}/api/v1/stock-items", app.address))
        .header("x-correlation-id", "checkout-42")
        .json(
            &json!({"sku": "META-1", "name": "Mug", "kind": "product", "quantity": 3,
                      "unit_price": {"amount": 100, "currency": "USD"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-correlation-id"], "checkout-42");
    app.post(
        "/api/v1/stock-items/META-1/restock",
        &json!({"quantity": 1}),
    )
    .await;
    app.post(
        "/api/v1/orders",
        &json!({"customer_id": uuid::Uuid::new_v4(), "items": [{"sku": "META-1", "quantity": 1}]}),
    )
    .await;

    // Assert
    let events = app.all_events().await;
    assert_eq!(events.len(), 3);
    for event in &events {
        for key in ["correlation_id", "causation_id", "actor", "request_id"] {
            let value = event.metadata[key].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "{key} missing on {event:?}");
        }
        assert_eq!(event.metadata["actor"], "anonymous");
        assert_eq!(event.metadata["causation_id"], event.metadata["request_id"]);
    }
    assert_eq!(events[0].metadata["correlation_id"], "checkout-42");
    assert_ne!(events[1].metadata["correlation_id"], "checkout-42");
    assert_ne!(
        events[1].metadata["request_id"],
        events[2].metadata["request_id"]
    );
}

#[tokio::test]
async fn the_database_fills_global_position_and_transaction_id_for_every_event() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.register_product(&format!("POS-{i}"), 2).await;
        app.post(
            &format!("/api/v1/stock-items/POS-{i}/restock"),
            &json!({"quantity": 1}),
        )
        .await;
    }

    let events = app.all_events().await;

    assert_eq!(events.len(), 10);
    let positions: Vec<i64> = events.iter().map(|e| e.global_position.unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(events.iter().all(|e| e.transaction_id.unwrap() > 0));
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE recorded_at > now() - interval '1 hour'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(recorded, 10);
}

#[tokio::test]
async fn a_command_answers_the_global_position_of_its_last_event() {
    let app = spawn_app().await;
    app.register_product("ANSWER", 1).await;

    let body: serde_json::Value = app
        .post(
            "/api/v1/stock-items/ANSWER/restock",
            &json!({"quantity": 4}),
        )
        .await
        .json()
        .await
        .unwrap();

    let events = app.events_for("stock_item", "ANSWER").await;
    assert_eq!(body["id"], "ANSWER");
    assert_eq!(
        body["position"].as_i64(),
        events.last().unwrap().global_position
    );
}
