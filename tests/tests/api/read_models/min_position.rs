//! Read-your-writes with `min_position`, and a position the projections never reach.

use super::{get_ok, place_order};
use serde_json::{Value, json};
use tests::spawn_app_without_sagas;
use uuid::Uuid;

#[tokio::test]
async fn a_read_with_the_commands_position_always_sees_the_command() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("RYW", 1).await;
    let customer = Uuid::new_v4();

    for expected in 2..=51 {
        // Act
        let response = app
            .post("/api/v1/stock-items/RYW/restock", &json!({"quantity": 1}))
            .await;
        assert_eq!(response.status(), 202);
        let (_, position) = accepted_sku(response).await;
        let item = get_ok(
            &app,
            &format!("/api/v1/stock-items/RYW?min_position={position}"),
        )
        .await;

        // Assert
        assert_eq!(item["on_hand"], expected, "{item}");
        assert!(item["position"].as_i64().unwrap() >= position);
    }
    for _ in 0..10 {
        let (id, position) = place_order(&app, customer, "RYW", 1).await;
        let (status, order) = app
            .get_json(&format!("/api/v1/orders/{id}?min_position={position}"))
            .await;
        assert_eq!(
            (status, &order["status"]),
            (200, &json!("STARTED")),
            "{order}"
        );
    }
}

/// The position of a stock command's 202 answer (its id is a SKU, not a UUID).
async fn accepted_sku(response: reqwest::Response) -> (String, i64) {
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["position"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_min_position_beyond_the_head_answers_503_projection_behind() {
    let app = spawn_app_without_sagas().await;
    app.register_product("AHEAD", 1).await;
    let beyond = app.head().await + 1_000_000;

    // The server waits its read_wait (10 s in tests) before giving up.
    let response = app
        .get(&format!("/api/v1/stock-items/AHEAD?min_position={beyond}"))
        .await;

    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "projection_behind");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&beyond.to_string())
    );
}

/// Found by the load driver: `min_position=0` ("before the first event", which every model has
/// passed) passed validation but waited for an event at position 0, which never exists, and
/// answered 503 after the whole read wait.
#[tokio::test]
async fn a_min_position_of_zero_is_reached_at_once() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("ZERO", 1).await;
    let seen = app
        .get_at("/api/v1/stock-items/ZERO", app.head().await)
        .await;
    assert_eq!(seen.status(), 200);

    // Act
    let started = std::time::Instant::now();
    let response = app.get("/api/v1/stock-items/ZERO?min_position=0").await;

    // Assert
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}
