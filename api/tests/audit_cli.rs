//! `reserva audit verify` and `reserva replay` as an operator runs them: their exit codes
//! and what they print, on an untouched store and after it was tampered with.

use api::postgres::{ClusterOptions, PrivateCluster};
use std::process::{Command, Output};

fn reserva(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reserva"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env_remove("RESERVA_AUDIT__KEY")
        .output()
        .expect("run reserva")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// One store taken through its life on purpose: seeded, checked clean, tampered, checked again.
#[tokio::test]
async fn verify_and_replay_exit_0_on_an_untouched_store_and_1_once_it_was_tampered_with() {
    // Arrange: a store with real events, written by `reserva seed`, and a signed checkpoint.
    let data = std::env::temp_dir().join(format!("reserva-audit-cli-{}", std::process::id()));
    let cluster = PrivateCluster::start(
        &data.join("cluster"),
        ClusterOptions {
            durable: false,
            max_connections: 20,
            statement_statistics: false,
        },
    )
    .await
    .expect("start the cluster");
    let url = cluster.admin_url();
    let seeded = reserva(&url, &["seed", "--products", "3", "--slots", "1"]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let signed = Command::new(env!("CARGO_BIN_EXE_reserva"))
        .args(["audit", "sign"])
        .env("DATABASE_URL", &url)
        .env("RESERVA_AUDIT__KEY", "k".repeat(32))
        .output()
        .unwrap();
    assert!(
        stdout(&signed).contains("checkpoint 1 signed"),
        "{}",
        stdout(&signed)
    );

    // Act + Assert: untouched, both are clean and exit 0.
    let clean = reserva(&url, &["audit", "verify"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    assert!(stdout(&clean).contains("the store is as it was written"));
    assert!(stdout(&clean).contains("events/s"));
    let replayed = reserva(&url, &["replay", "--all", "--dry-run"]);
    assert_eq!(replayed.status.code(), Some(0), "{}", stdout(&replayed));
    let stream = reserva(
        &url,
        &[
            "audit",
            "stream",
            "stock_item",
            "DEMO-P-001",
            "--format",
            "ndjson",
        ],
    );
    assert!(stream.status.success());
    let first: serde_json::Value =
        serde_json::from_str(stdout(&stream).lines().next().unwrap()).unwrap();
    assert_eq!(first["event_type"], "StockItemRegistered");
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);

    // Act: a payload rewritten in place, and an event today's code cannot read.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload::jsonb, '{StockItemRegistered,on_hand}', '999')::json \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = 'DEMO-P-002' AND sequence = 1",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('stock_item', 'DEMO-P-003', 2, 'StockRestocked', '1.0', '{\"StockRestocked\":{\"units\":\"many\"}}', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // Assert: verify names the rewritten event and exits 1; replay names the unreadable one.
    let tampered = reserva(&url, &["audit", "verify"]);
    assert_eq!(tampered.status.code(), Some(1), "{}", stdout(&tampered));
    assert!(
        stdout(&tampered).contains("modified   stock_item/DEMO-P-002 #1"),
        "{}",
        stdout(&tampered)
    );
    let broken = reserva(&url, &["replay", "--all", "--dry-run"]);
    assert_eq!(broken.status.code(), Some(1), "{}", stdout(&broken));
    assert!(
        stdout(&broken).contains("undecodable      stock_item/DEMO-P-003 #2 StockRestocked"),
        "{}",
        stdout(&broken)
    );
    let one = reserva(&url, &["replay", "stock_item", "DEMO-P-001"]);
    assert_eq!(one.status.code(), Some(0), "{}", stdout(&one));

    cluster.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&data);
}
