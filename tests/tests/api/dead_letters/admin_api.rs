//! The `/admin/dead-letters` API: listing, bad ids, skipping an event a projection cannot apply.

use domain::stock_item::StockItemEvent;
use serde_json::Value;
use tests::{eventually, spawn_app};

async fn problem(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.json().await.unwrap())
}

#[tokio::test]
async fn the_admin_api_lists_dead_letters_and_refuses_unknown_or_malformed_ids() {
    let app = spawn_app().await;

    let list = app.get("/admin/dead-letters").await;
    let unknown = app
        .post("/admin/dead-letters/999999/retry", &Value::Null)
        .await;
    let malformed = app
        .post("/admin/dead-letters/abc/retry", &Value::Null)
        .await;

    assert_eq!(list.status(), 200);
    assert_eq!(list.json::<Value>().await.unwrap(), serde_json::json!([]));
    let (status, content_type, body) = problem(unknown).await;
    assert_eq!(status, 404);
    assert!(content_type.starts_with("application/problem+json"));
    assert_eq!(body["code"], "dead_letter_not_found", "{body}");
    let (status, content_type, _) = problem(malformed).await;
    assert_eq!(status, 400);
    assert!(content_type.starts_with("application/problem+json"));
}

#[tokio::test]
async fn an_event_the_stock_projection_cannot_apply_is_listed_and_can_be_skipped_over_http() {
    // Arrange: a restock of an item that was never registered (written around the bus).
    let app = spawn_app().await;
    let event = StockItemEvent::StockRestocked {
        quantity: 1,
        on_hand: 1,
    };
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata) \
         VALUES ('stock_item', 'GHOST', 1, 'StockRestocked', '1.0', $1::text::json, '{}')",
    )
    .bind(serde_json::to_string(&event).unwrap())
    .execute(&app.pool)
    .await
    .unwrap();

    // Act: the server's own projector parks it.
    let parked = eventually("the stock projection to park the ghost restock", || async {
        let letters: Value = app
            .get("/admin/dead-letters?subscription=stock_items")
            .await
            .json()
            .await
            .unwrap();
        letters
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["status"] == "parked")
            .cloned()
    })
    .await;
    let id = parked["id"].as_i64().unwrap();
    let position = parked["global_position"].as_i64().unwrap();
    let (status, _, body) = problem(app.get_at("/api/v1/stock-items/GHOST", position).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("projection_parked")),
        "a read that asks for a parked event is told so, not shown a row without it"
    );
    let skip = app
        .post(&format!("/admin/dead-letters/{id}/skip"), &Value::Null)
        .await;

    // Assert
    assert_eq!(parked["aggregate_id"], "GHOST");
    assert_eq!(parked["event_type"], "StockRestocked");
    assert_eq!(parked["attempts"], 5);
    assert_eq!(skip.status(), 202);
    assert_eq!(
        skip.json::<Value>().await.unwrap()["requested_action"],
        "skip"
    );
    eventually("the ghost restock to be skipped", || async {
        let letters: Value = app
            .get("/admin/dead-letters?all=true")
            .await
            .json()
            .await
            .unwrap();
        (letters[0]["status"] == "skipped").then_some(())
    })
    .await;
    let (status, _, body) = problem(
        app.post(&format!("/admin/dead-letters/{id}/retry"), &Value::Null)
            .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "dead_letter_closed", "{body}");
    let open: Value = app.get("/admin/dead-letters").await.json().await.unwrap();
    assert_eq!(open, serde_json::json!([]));
}
