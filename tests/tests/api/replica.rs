//! Queries from a streaming replica (`RESERVA_DB__READ_URL`): a real replica on loopback, made
//! with `pg_basebackup -R` of a private primary of the test's own (whatever `DATABASE_URL` says:
//! a shared server may not allow replication). Read-your-writes holds through it: a query with
//! `min_position` waits until the replica has replayed that position, and answers
//! `503 projection_behind` while its replay is paused.

use api::postgres::{ClusterOptions, PrivateCluster};
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::time::Duration;
use tests::{TestApp, spawn_app_on_database};

async fn restock(app: &TestApp, sku: &str, quantity: u32) -> i64 {
    let response = app
        .post(
            &format!("/api/v1/stock-items/{sku}/restock"),
            &json!({"quantity": quantity}),
        )
        .await;
    assert_eq!(response.status(), 202, "restock");
    response.json::<Value>().await.expect("JSON")["position"]
        .as_i64()
        .expect("a position")
}

#[tokio::test]
async fn queries_read_from_a_replica_and_min_position_waits_for_its_replay() {
    // Arrange: a primary, its replica, a database on the primary (replicated), and a server
    // writing to the primary and reading from the replica.
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.reserva"))
        .join(format!("replica-test-{}", uuid::Uuid::new_v4().simple()));
    let options = ClusterOptions {
        durable: true,
        max_connections: 60,
        statement_statistics: false,
    };
    let primary = PrivateCluster::start(&dir.join("primary"), options)
        .await
        .expect("start the primary");
    let replica = primary
        .start_replica("replica")
        .await
        .expect("start the replica");
    let server = PgConnectOptions::from_str(&primary.admin_url())
        .expect("URL")
        .disable_statement_logging();
    let mut replica_url = None;
    let app = spawn_app_on_database(server, |settings, database| {
        let url = replica.url(database.name());
        settings.read_url = Some(url.clone());
        settings.read_wait = Duration::from_millis(1_500);
        replica_url = Some(url);
    })
    .await;
    let replica_url = replica_url.expect("set");

    // Act + assert: a write on the primary is read back through the replica.
    app.register_product("REPLICA-1", 5).await;
    let position = restock(&app, "REPLICA-1", 2).await;
    let (status, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/REPLICA-1?min_position={position}"
        ))
        .await;
    assert_eq!((status, item["on_hand"].clone()), (200, json!(7)), "{item}");

    // The replica stops replaying: the next write is on the primary (and projected there)
    // but a read that asks for it waits, then answers 503 — so reads do come from the
    // replica, and min_position is honoured against it.
    let mut on_replica = <sqlx::PgConnection as sqlx::Connection>::connect(&replica_url)
        .await
        .expect("connect to the replica");
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut on_replica)
        .await
        .expect("pause replay");
    let later = restock(&app, "REPLICA-1", 3).await;
    tests::eventually("the primary's projection has the restock", || async {
        let on_hand: Option<i64> =
            sqlx::query_scalar("SELECT on_hand FROM rm_stock_items WHERE id = 'REPLICA-1'")
                .fetch_optional(&app.pool)
                .await
                .expect("read the primary");
        (on_hand == Some(10)).then_some(())
    })
    .await;
    let (status, problem) = app
        .get_json(&format!(
            "/api/v1/stock-items/REPLICA-1?min_position={later}"
        ))
        .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (503, json!("projection_behind")),
        "{problem}"
    );
    let (_, stale) = app.get_json("/api/v1/stock-items/REPLICA-1").await;
    assert_eq!(
        stale["on_hand"], 7,
        "without min_position: the replica's (older) view"
    );

    // Replay resumes: the same read now answers with the write.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut on_replica)
        .await
        .expect("resume replay");
    let (status, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/REPLICA-1?min_position={later}"
        ))
        .await;
    assert_eq!(
        (status, item["on_hand"].clone()),
        (200, json!(10)),
        "{item}"
    );

    drop(on_replica);
    drop(app);
    let _ = replica.stop().await;
    let _ = primary.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
