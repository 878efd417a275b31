//! Graceful shutdown: requests in flight are answered, then every subscription stops after
//! its batch and hands its lock back at once.

use commands::feed::subscription::{self, keys};
use serde_json::Value;
use std::time::Duration;
use tests::{eventually, feed_end, spawn_app, wait_until_caught_up};

#[tokio::test]
async fn a_graceful_shutdown_answers_the_request_in_flight_then_frees_every_subscription() {
    // Arrange: a completed order, so projections and sagas all have checkpoints and locks.
    let app = spawn_app().await;
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
    // A read held where the test can see it: waiting for a table lock the test holds.
    let mut locker = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE rm_stock_items IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let in_flight = tokio::spawn(
        app.client
            .get(format!("{}/api/v1/stock-items/SHUT-1", app.address))
            .send(),
    );
    eventually("the read to wait on the lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%rm_stock_items%'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (waiting > 0).then_some(())
    })
    .await;

    // Act: shut down while the read waits, then let it go.
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
    assert!(!shutdown.is_finished(), "shutdown must wait for the read");
    locker.rollback().await.unwrap();
    let response = in_flight.await.unwrap().expect("the read is answered");
    shutdown.await.unwrap();

    // Assert: the read was served in full.
    assert_eq!(response.status(), 200);
    let item: Value = response.json().await.unwrap();
    assert_eq!(item["on_hand"], 3, "{item}");
    // No subscription holds a lock any more: another process can take each one over now.
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        held, 0,
        "advisory locks still held after a graceful shutdown"
    );
    let end = feed_end(&app.pool).await;
    let mut successor = subscription::dedicated_connection(&app.pool, "successor")
        .await
        .unwrap();
    let mut names = projections::catalog::names();
    names.extend(["order_saga", "booking_saga"]);
    for name in names {
        assert!(
            subscription::try_session_lock(&mut successor, keys::RUN, name)
                .await
                .unwrap(),
            "{name} is still locked"
        );
        // Every checkpoint was committed at the end of the feed.
        let at = subscription::stored_checkpoint(&mut successor, name)
            .await
            .unwrap();
        assert_eq!(at, end, "{name}");
    }
}
