//! The private cluster is shared: a short-lived `reserva` command that joins a running cluster
//! (an operator's `reserva projections` beside a `reserva serve`) must not stop it on exit.

use api::postgres::{ClusterOptions, PrivateCluster};
use std::process::Command;

#[tokio::test]
async fn a_command_that_joined_the_cluster_leaves_it_running_when_it_exits() {
    // Arrange: this process starts a cluster in a fresh data directory.
    let data = std::env::temp_dir().join(format!("reserva-join-{}", std::process::id()));
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

    // Act: another process joins it, does its work and exits.
    let output = Command::new(env!("CARGO_BIN_EXE_reserva"))
        .arg("projections")
        .env_remove("DATABASE_URL")
        .env("RESERVA_DATA_DIR", &data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reserva projections");

    // Assert: it worked, and the cluster still answers this process.
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("stock_items"));
    let pool = sqlx::PgPool::connect(&cluster.admin_url())
        .await
        .expect("the cluster is still running");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;

    // The last user out stops it.
    cluster.stop().await.expect("stop");
    assert!(sqlx::PgPool::connect(&cluster.admin_url()).await.is_err());
    let _ = std::fs::remove_dir_all(&data);
}
