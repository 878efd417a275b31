//! Where each projection stands, and what holds the feed back.

use chrono::{DateTime, Utc};
use commands::feed;
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;

use crate::catalog;

/// One projection's state as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProjectionStatus {
    /// Its name.
    pub name: &'static str,
    /// Its live table.
    pub table: &'static str,
    /// Global position of the last event handled (0 before the first).
    pub position: i64,
    /// When the checkpoint last moved.
    pub updated_at: Option<DateTime<Utc>>,
    /// Settled events after the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest settled event not yet handled (0 when caught up).
    pub lag_seconds: f64,
    /// Dead letters still parked or waiting.
    pub open_dead_letters: i64,
}

/// Every projection's status.
///
/// # Errors
/// Any database error.
pub async fn all(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let mut out = Vec::new();
    for projection in catalog::all() {
        let name = projection.name();
        let (transaction_id, position, updated_at): (i64, i64, Option<DateTime<Utc>>) =
            sqlx::query_as(
                "SELECT transaction_id, global_position, updated_at FROM subscriptions \
                 WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?
            .unwrap_or((0, 0, None));
        let (lag_events, lag_seconds): (i64, f64) = sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at)), 0)::float8 \
             FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
        )
        .bind(transaction_id.to_string())
        .bind(position)
        .fetch_one(pool)
        .await?;
        let open_dead_letters: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dead_letters \
             WHERE subscription = $1 AND status IN ('parked', 'waiting')",
        )
        .bind(name)
        .fetch_one(pool)
        .await?;
        out.push(ProjectionStatus {
            name,
            table: projection.table(),
            position,
            updated_at,
            lag_events,
            lag_seconds: lag_seconds.max(0.0),
            open_dead_letters,
        });
    }
    Ok(out)
}

/// Exports, every `every`, the gauges of [`sample_once`].
pub fn spawn_sampler(pool: PgPool, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = sample_once(&pool).await {
                tracing::debug!(%error, "could not sample projection lag and stock gauges");
            }
        }
    })
}

/// Sets the sampled gauges once: each projection's lag and open dead letters, the age of the
/// oldest open transaction (the one that stalls every feed reader), and how many stock items
/// are low on stock (`reserva_stock_items_low`) and depleted (`reserva_stock_items_depleted`)
/// in the stock read model.
///
/// Gauges belong to the process's recorder: with several services in one process (tests), the
/// last one sampled wins.
///
/// # Errors
/// Any database error; gauges sampled before it keep their new values.
pub async fn sample_once(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let age = feed::oldest_transaction_age(&mut conn).await?;
    drop(conn);
    metrics::gauge!("reserva_feed_oldest_transaction_age_seconds").set(age);
    for status in all(pool).await? {
        let name = status.name;
        metrics::gauge!("reserva_subscription_lag_events", "subscription" => name)
            .set(status.lag_events as f64);
        metrics::gauge!("reserva_subscription_lag_seconds", "subscription" => name)
            .set(status.lag_seconds);
        metrics::gauge!("reserva_dead_letters_open", "subscription" => name)
            .set(status.open_dead_letters as f64);
    }
    let (low, depleted): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE low_stock), count(*) FILTER (WHERE depleted) \
         FROM rm_stock_items",
    )
    .fetch_one(pool)
    .await?;
    metrics::gauge!("reserva_stock_items_low").set(low as f64);
    metrics::gauge!("reserva_stock_items_depleted").set(depleted as f64);
    Ok(())
}
