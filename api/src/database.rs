//! Picks the database: `DATABASE_URL`, or the private cluster.

use anyhow::Context;
use sqlx::PgPool;

use crate::configuration::{Settings, connect_pool};
use crate::postgres::{ClusterOptions, PrivateCluster};

/// Name of the service's database inside the private cluster.
const PRIVATE_DATABASE: &str = "reserva";

/// An open pool, and the private cluster behind it if one was started.
pub struct Database {
    /// The service's pool.
    pub pool: PgPool,
    /// `Some` when no `DATABASE_URL` was given.
    pub cluster: Option<PrivateCluster>,
}

/// Connects to `DATABASE_URL`, or starts the private cluster and creates its database.
///
/// # Errors
/// Cluster start-up or connection failures, with context.
pub async fn open(settings: &Settings) -> anyhow::Result<Database> {
    if let Some(url) = &settings.database_url {
        let pool = connect_pool(url, settings.db_max_connections)
            .await
            .context("connecting to DATABASE_URL")?;
        return Ok(Database {
            pool,
            cluster: None,
        });
    }
    let options = ClusterOptions {
        durable: true,
        max_connections: 200,
        statement_statistics: false,
    };
    let cluster = PrivateCluster::start(&settings.data_dir.join("cluster"), options)
        .await
        .context("starting the private PostgreSQL cluster")?;
    tracing::info!(url = %cluster.url(PRIVATE_DATABASE), "private PostgreSQL cluster running");
    let admin = connect_pool(&cluster.admin_url(), 1).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(PRIVATE_DATABASE)
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {PRIVATE_DATABASE}"))
            .execute(&admin)
            .await?;
    }
    admin.close().await;
    let pool = connect_pool(&cluster.url(PRIVATE_DATABASE), settings.db_max_connections).await?;
    Ok(Database {
        pool,
        cluster: Some(cluster),
    })
}
