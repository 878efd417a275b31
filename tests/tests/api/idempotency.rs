//! `Idempotency-Key`: a keyed command runs once; a retry gets the first answer back without
//! running again; the key with another request is 422; a malformed key is 400.
//! (Every request here is anonymous, so all share the `anonymous` scope; scoping by token
//! subject is covered by the unit tests in `api::idempotency`.)

use serde_json::{Value, json};
use tests::{TestApp, spawn_app_without_sagas};

fn order(customer: uuid::Uuid) -> Value {
    json!({"customer_id": customer, "items": [{"sku": "MUG-1", "quantity": 1}]})
}

async fn count(app: &TestApp, event_type: &str) -> usize {
    app.all_events()
        .await
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

#[tokio::test]
async fn a_retried_order_returns_the_first_answer_and_records_nothing_new() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 5).await;
    let body = order(uuid::Uuid::new_v4());

    // Act
    let first = app.post_with_key("/api/v1/orders", "order-1", &body).await;
    let first_status = first.status();
    let first_location = first.headers()["location"].clone();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body: Value = first.json().await.unwrap();
    let events_after_first = app.event_count().await;
    let retry = app.post_with_key("/api/v1/orders", "order-1", &body).await;

    // Assert
    assert_eq!(first_status, 202);
    assert_eq!(retry.status(), 202);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], first_location);
    assert_eq!(retry.headers()["content-type"], "application/json");
    let retry_body: Value = retry.json().await.unwrap();
    assert_eq!(retry_body, first_body, "same id and position");
    assert_eq!(app.event_count().await, events_after_first);
    assert_eq!(count(&app, "OrderPlaced").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_runs_nothing() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 5).await;
    let first = app
        .post_with_key("/api/v1/orders", "k-1", &order(uuid::Uuid::new_v4()))
        .await;
    assert_eq!(first.status(), 202);
    let events = app.event_count().await;

    // Act
    let other_body = app
        .post_with_key("/api/v1/orders", "k-1", &order(uuid::Uuid::new_v4()))
        .await;
    let other_path = app
        .post_with_key(
            "/api/v1/stock-items/MUG-1/restock",
            "k-1",
            &json!({"quantity": 1}),
        )
        .await;

    // Assert
    for response in [other_body, other_path] {
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "idempotency_key_reused");
    }
    assert_eq!(app.event_count().await, events);
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_place_one_order() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 50).await;
    let body = order(uuid::Uuid::new_v4());

    // Act
    let requests = (0..20).map(|_| app.post_with_key("/api/v1/orders", "same", &body));
    let responses = futures::future::join_all(requests).await;

    // Assert
    let mut ids = std::collections::HashSet::new();
    let mut in_progress = 0;
    for response in responses {
        match response.status().as_u16() {
            202 => {
                let body: Value = response.json().await.unwrap();
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => {
                assert!(response.headers().get("retry-after").is_some());
                let problem: Value = response.json().await.unwrap();
                assert_eq!(problem["code"], "idempotency_key_in_progress");
                in_progress += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "every 202 names the one order");
    assert!(in_progress < 20);
    assert_eq!(count(&app, "OrderPlaced").await, 1);
}

#[tokio::test]
async fn a_client_error_is_replayed_too() {
    // Arrange: no such product yet.
    let app = spawn_app_without_sagas().await;
    let body = order(uuid::Uuid::new_v4());
    let first = app.post_with_key("/api/v1/orders", "k-422", &body).await;
    assert_eq!(first.status(), 422);
    let first_problem: Value = first.json().await.unwrap();
    app.register_product("MUG-1", 5).await;

    // Act: the retry would now succeed if it ran.
    let retry = app.post_with_key("/api/v1/orders", "k-422", &body).await;

    // Assert
    assert_eq!(retry.status(), 422);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["content-type"], "application/problem+json");
    let retry_problem: Value = retry.json().await.unwrap();
    assert_eq!(retry_problem["code"], "unknown_sku");
    assert_eq!(retry_problem["code"], first_problem["code"]);
    assert_eq!(count(&app, "OrderPlaced").await, 0);
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 5).await;
    let too_long = "k".repeat(256);

    // Act + Assert
    for key in ["", too_long.as_str(), "café"] {
        let response = app
            .client
            .post(format!("{}/api/v1/orders", app.address))
            .header("idempotency-key", key.as_bytes())
            .json(&order(uuid::Uuid::new_v4()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "key {key:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_idempotency_key");
    }
    assert_eq!(count(&app, "OrderPlaced").await, 0);
}

#[tokio::test]
async fn keys_work_on_restock_and_on_a_cancel_without_body() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 5).await;
    let placed: Value = app
        .post("/api/v1/orders", &order(uuid::Uuid::new_v4()))
        .await
        .json()
        .await
        .unwrap();
    let id = placed["id"].as_str().unwrap();
    let cancel = || {
        app.client
            .post(format!("{}/api/v1/orders/{id}/cancel", app.address))
            .header("idempotency-key", "cancel-1")
            .send()
    };
    let restock = json!({"quantity": 3});

    // Act
    let restocks = [
        app.post_with_key("/api/v1/stock-items/MUG-1/restock", "r-1", &restock)
            .await,
        app.post_with_key("/api/v1/stock-items/MUG-1/restock", "r-1", &restock)
            .await,
    ];
    let cancels = [cancel().await.unwrap(), cancel().await.unwrap()];

    // Assert
    for [first, retry] in [restocks, cancels] {
        assert_eq!(first.status(), 202);
        assert!(first.headers().get("idempotent-replayed").is_none());
        assert_eq!(retry.status(), 202);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let first: Value = first.json().await.unwrap();
        let retry: Value = retry.json().await.unwrap();
        assert_eq!(first, retry);
    }
    assert_eq!(count(&app, "StockRestocked").await, 1);
    assert_eq!(
        app.events_for("order", id).await.len(),
        2,
        "placed, cancelled"
    );
}

#[tokio::test]
async fn a_keyed_post_outside_commands_and_a_get_are_untouched() {
    // Arrange
    let app = spawn_app_without_sagas().await;

    // Act
    let first = app
        .client
        .get(format!("{}/api/v1/orders", app.address))
        .header("idempotency-key", "g-1")
        .send()
        .await
        .unwrap();
    let second = app
        .client
        .get(format!("{}/api/v1/orders", app.address))
        .header("idempotency-key", "g-1")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(first.status(), 200);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
