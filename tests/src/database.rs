//! The PostgreSQL server tests run on, and fresh databases on it dropped with their handle.

use api::postgres::{ClusterOptions, PrivateCluster};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::OnceCell;

static SERVER: OnceCell<PgConnectOptions> = OnceCell::const_new();
static COUNTING_SERVER: OnceCell<PgConnectOptions> = OnceCell::const_new();

/// Connection options of the server tests create databases on.
pub async fn server() -> PgConnectOptions {
    SERVER
        .get_or_init(|| async {
            let url = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../.reserva/test-cluster");
                    let options = ClusterOptions {
                        durable: false,
                        max_connections: 500,
                        statement_statistics: false,
                    };
                    PrivateCluster::start(std::path::Path::new(dir), options)
                        .await
                        .expect("start the private test cluster")
                        .admin_url()
                }
            };
            PgConnectOptions::from_str(&url)
                .expect("DATABASE_URL parses")
                .disable_statement_logging()
        })
        .await
        .clone()
}

/// A private cluster of the test process's own that counts every statement run
/// (`pg_stat_statements`), whatever `DATABASE_URL` says: the statement budget's server. The
/// counts are server-wide, so it is for tests that filter by their own database.
pub async fn counting_server() -> PgConnectOptions {
    COUNTING_SERVER
        .get_or_init(|| async {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../.reserva/counting-cluster");
            let options = ClusterOptions {
                durable: false,
                max_connections: 100,
                statement_statistics: true,
            };
            let url = PrivateCluster::start(std::path::Path::new(dir), options)
                .await
                .expect("start the statement-counting cluster")
                .admin_url();
            PgConnectOptions::from_str(&url)
                .expect("the cluster's URL parses")
                .disable_statement_logging()
        })
        .await
        .clone()
}

/// A database that is dropped when this value is.
pub struct TestDatabase {
    /// A pool on it.
    pub pool: PgPool,
    name: String,
    server: PgConnectOptions,
}

/// A fresh, empty database (no migrations) and a pool on it.
pub async fn fresh_database(max_connections: u32) -> TestDatabase {
    fresh_database_on(server().await, max_connections).await
}

/// Like [`fresh_database`], on `server` (a cluster of the test's own).
pub async fn fresh_database_on(server: PgConnectOptions, max_connections: u32) -> TestDatabase {
    let name = format!("reserva_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server.connect().await.expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(server.clone().database(&name))
        .await
        .expect("connect to the test database");
    TestDatabase { pool, name, server }
}

impl TestDatabase {
    /// The database's name (the same on a replica of its server).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL of this database, for a `reserva` process the test starts (trust auth: no
    /// password).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.server.get_username(),
            self.server.get_host(),
            self.server.get_port(),
            self.name
        )
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let database = std::mem::take(&mut self.name);
        let server = self.server.clone();
        // Drop runs inside the test's runtime, where blocking on async work is not allowed:
        // clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = server.connect().await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
