//! Graceful shutdown: requests in flight are answered, then every subscription stops after
//! its batch and hands its lock back at once.

use commands::CommandMetadata;
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand};
use feed::checkpoint;
use feed::locks::{self, keys};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;
use tests::{eventually, feed_end, spawn_app_with, wait_until_caught_up};

// Long on purpose: one shutdown, followed step by step (request in flight, held batch,
// locks handed back, checkpoints at the head); the steps only make sense in this order.
#[tokio::test]
async fn a_graceful_shutdown_answers_the_request_in_flight_then_frees_every_subscription() {
    // Arrange: a completed order, so projections and sagas all have checkpoints and locks.
    // Reads go to the table (no read cache), so that one can be held in flight by a lock.
    let app = spawn_app_with(|settings| settings.read_cache_rows = 0).await;
    app.register_product("SHUT-1", 5).await;
    let placed = app
        .post(
            "/api/v1/orders",
            &serde_json::json!({"customer_id": uuid::Uuid::new_v4(),
                                "items": [{"sku": "SHUT-1", "quantity": 2}]}),
        )
        .await;
    assert_eq!(placed.status(), 202);
    let id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the order completes", || async {
        let (code, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && order["status"] == "COMPLETED").then_some(())
    })
    .await;
    app.catch_up().await;
    for saga in ["order_saga", "booking_saga"] {
        wait_until_caught_up(&app.pool, saga).await;
    }
    // The test's own pool: connections the server's workers opened in the shared pool die
    // with their runtimes when the server stops.
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*app.pool.connect_options()).clone())
        .await
        .unwrap();
    // A stock_items batch held mid-transaction: reads pass, its write waits. (EXCLUSIVE
    // takes no xid, so the feed still flows for everyone else.)
    let mut stock_lock = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE rm_stock_items IN EXCLUSIVE MODE")
        .execute(&mut *stock_lock)
        .await
        .unwrap();
    let restock = StockItemCommand::Restock {
        quantity: Quantity::new(4).unwrap(),
    };
    app.bus
        .execute::<StockItem>("SHUT-1", restock, &CommandMetadata::system("test"))
        .await
        .unwrap();
    waiting_on_a_lock(&db, "application_name = 'reserva subscription stock_items'").await;
    for name in subscriptions() {
        if name != "stock_items" {
            wait_until_caught_up(&db, name).await;
        }
    }
    // A read held where the test can see it: waiting for a table lock the test holds.
    let mut orders_lock = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE rm_orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *orders_lock)
        .await
        .unwrap();
    let in_flight = tokio::spawn(
        app.client
            .get(format!("{}/api/v1/orders/{id}", app.address))
            .send(),
    );
    waiting_on_a_lock(&db, "query ILIKE '%FROM rm_orders%'").await;

    // Act: shut down while both wait; let the read go, then the batch.
    let shutdown = tokio::spawn(app.shutdown_gracefully());
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    eventually("the server to stop accepting", || async {
        probe
            .get(format!("{}/health/live", app.address))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    orders_lock.rollback().await.unwrap();
    let response = in_flight.await.unwrap().expect("the read is answered");
    eventually("every subscription but stock_items to let go", || async {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND a.datname = current_database() \
               AND a.application_name <> 'reserva subscription stock_items'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        (held == 0).then_some(())
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the stock_items batch"
    );
    stock_lock.rollback().await.unwrap();
    shutdown.await.unwrap();

    // Assert: the read was served in full, the held batch committed.
    assert_eq!(response.status(), 200);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "COMPLETED", "{order}");
    let on_hand: i64 = sqlx::query_scalar("SELECT on_hand FROM rm_stock_items WHERE id = 'SHUT-1'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(on_hand, 3 + 4);
    // No subscription holds a lock any more: another process can take each one over now.
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        held, 0,
        "advisory locks still held after a graceful shutdown"
    );
    let end = feed_end(&db).await;
    let mut successor = locks::dedicated_connection(&db, "successor").await.unwrap();
    for name in subscriptions() {
        assert!(
            locks::try_session_lock(&mut successor, keys::RUN, name)
                .await
                .unwrap(),
            "{name} is still locked"
        );
        // Every checkpoint was committed at the end of the feed.
        let at = checkpoint::stored(&mut successor, name).await.unwrap();
        assert_eq!(at, end, "{name}");
    }
}

/// Waits until a backend of this database matching `filter` waits for a lock.
async fn waiting_on_a_lock(pool: &sqlx::PgPool, filter: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND {filter}"
    );
    eventually(
        &format!("a backend with {filter} to wait on a lock"),
        || async {
            let waiting: i64 = sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
}

/// Every subscription the service runs: the projections and the sagas.
fn subscriptions() -> Vec<&'static str> {
    let mut names = projections::catalog::names();
    names.extend(["order_saga", "booking_saga"]);
    names
}
