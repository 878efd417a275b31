//! Rebuilds refused: a second one while one holds the lock, and an unknown projection.

use super::{post_rebuild, progress, table_oid, wait_for_phase};
use projections::catalog;
use projections::rebuild::{self, RebuildError};
use serde_json::{Value, json};
use sqlx::Connection;
use tests::spawn_app_without_sagas;

#[tokio::test]
async fn a_second_rebuild_of_a_projection_is_refused_while_one_holds_its_lock() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("LOCKED", 5).await;
    app.catch_up().await;
    let stock = catalog::find("stock_items").unwrap();
    let original = table_oid(&app, "rm_stock_items").await;

    // Act & assert: another process's rebuild holds the rebuild lock.
    let holder = app
        .hold_lock(
        "SELECT pg_advisory_lock(hashtextextended('reserva.subscription.rebuild.stock_items', 0))",
    )
    .await;
    let refused = rebuild::rebuild(&app.pool, stock, &progress()).await;
    assert!(
        matches!(&refused, Err(RebuildError::AlreadyRunning(name)) if name == "stock_items"),
        "{refused:?}"
    );
    assert_eq!(post_rebuild(&app, "stock_items").await.status(), 202);
    let state = wait_for_phase(&app, "stock_items", "failed").await;
    assert!(
        state["error"].as_str().unwrap().contains("already running"),
        "{state}"
    );
    assert_eq!(table_oid(&app, "rm_stock_items").await, original);
    holder.close().await.unwrap();

    // Act & assert: our own rebuild, stopped just before its swap, holds the lock.
    let swap_blocker = app
        .hold_lock(
        "SELECT pg_advisory_lock_shared(hashtextextended('reserva.subscription.swap.stock_items', 0))",
    )
    .await;
    assert_eq!(post_rebuild(&app, "stock_items").await.status(), 202);
    wait_for_phase(&app, "stock_items", "swapping").await;
    let second = post_rebuild(&app, "stock_items").await;
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    let problem: Value = second.json().await.unwrap();
    assert_eq!(problem["code"], "rebuild_running");
    let direct = rebuild::rebuild(&app.pool, stock, &progress()).await;
    assert!(
        matches!(&direct, Err(RebuildError::AlreadyRunning(_))),
        "{direct:?}"
    );
    swap_blocker.close().await.unwrap();
    wait_for_phase(&app, "stock_items", "done").await;
    assert_ne!(table_oid(&app, "rm_stock_items").await, original);
    let (status, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/LOCKED?min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!((status, &item["on_hand"]), (200, &json!(5)), "{item}");
}

#[tokio::test]
async fn rebuilding_an_unknown_projection_is_404_problem_json() {
    let app = spawn_app_without_sagas().await;

    let response = post_rebuild(&app, "nope").await;

    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "projection_not_found");
    for name in catalog::names() {
        assert!(problem["detail"].as_str().unwrap().contains(name));
    }
}
