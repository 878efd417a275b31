//! Where each projection stands, and what holds the feed back.

use chrono::{DateTime, Utc};
use feed::oldest_transaction_age;
use serde::Serialize;
use sqlx::PgPool;

use crate::catalog;

/// One projection's state as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Dead letters still holding their aggregate (retrying, parked or waiting).
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
        let lag = subscription(pool, name).await?;
        out.push(ProjectionStatus {
            name,
            table: projection.table(),
            position: lag.position,
            updated_at: lag.updated_at,
            lag_events: lag.lag_events,
            lag_seconds: lag.lag_seconds,
            open_dead_letters: lag.open_dead_letters,
        });
    }
    Ok(out)
}

/// Where any subscription (a projection or a saga) stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionLag {
    /// Global position of the last event handled (0 before the first).
    pub position: i64,
    /// When the checkpoint last moved.
    pub updated_at: Option<DateTime<Utc>>,
    /// Settled events after the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest settled event not yet handled (0 when caught up).
    pub lag_seconds: f64,
    /// Dead letters still holding their aggregate (retrying, parked or waiting).
    pub open_dead_letters: i64,
}

/// Settled events after the checkpoint `(transaction_id, global_position)`: `$1`, `$2`.
const BEHIND: &str = "FROM events \
     WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())";

async fn checkpoint(
    pool: &PgPool,
    name: &str,
) -> Result<(i64, i64, Option<DateTime<Utc>>), sqlx::Error> {
    Ok(sqlx::query_as(
        "SELECT transaction_id, global_position, updated_at FROM subscriptions WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .unwrap_or((0, 0, None)))
}

/// The stored state of subscription `name` (a missing row counts as position 0).
///
/// # Errors
/// Any database error.
pub async fn subscription(pool: &PgPool, name: &str) -> Result<SubscriptionLag, sqlx::Error> {
    let (transaction_id, position, updated_at) = checkpoint(pool, name).await?;
    let (lag_events, lag_seconds): (i64, f64) = sqlx::query_as(&format!(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at)), 0)::float8 \
         {BEHIND}"
    ))
    .bind(transaction_id.to_string())
    .bind(position)
    .fetch_one(pool)
    .await?;
    let open_dead_letters: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dead_letters \
         WHERE subscription = $1 AND status IN ('retrying', 'parked', 'waiting')",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(SubscriptionLag {
        position,
        updated_at,
        lag_events,
        lag_seconds: lag_seconds.max(0.0),
        open_dead_letters,
    })
}

/// Settled events subscription `name` has not handled, counted up to `cap + 1` only, so a
/// probe stays cheap however far behind it is.
///
/// # Errors
/// Any database error.
pub async fn lag_events_capped(pool: &PgPool, name: &str, cap: i64) -> Result<i64, sqlx::Error> {
    let (transaction_id, position, _) = checkpoint(pool, name).await?;
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT 1 {BEHIND} LIMIT $3) AS behind"
    ))
    .bind(transaction_id.to_string())
    .bind(position)
    .bind(cap.saturating_add(1).max(1))
    .fetch_one(pool)
    .await
}

/// Sets the sampled gauges once: each projection's lag, position and open dead letters
/// ([`sample_subscription`]), the age of the oldest open transaction (the one that stalls
/// every feed reader), and how many stock items are low on stock (`reserva_stock_items_low`)
/// and depleted (`reserva_stock_items_depleted`) in the stock read model. `GET /metrics`
/// calls it on every scrape.
///
/// Gauges belong to the process's recorder: with several services in one process (tests), the
/// last one sampled wins.
///
/// # Errors
/// Any database error; gauges sampled before it keep their new values.
pub async fn sample_once(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let age = oldest_transaction_age(&mut conn).await?;
    drop(conn);
    metrics::gauge!("reserva_feed_oldest_transaction_age_seconds").set(age);
    for name in catalog::names() {
        sample_subscription(pool, name).await?;
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

/// Sets the gauges of one subscription (a projection or a saga): `reserva_subscription_lag_events`,
/// `reserva_subscription_lag_seconds`, `reserva_subscription_position` and
/// `reserva_dead_letters_open`, all labelled `subscription`.
///
/// # Errors
/// Any database error.
pub async fn sample_subscription(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    let lag = subscription(pool, name).await?;
    let name = name.to_owned();
    metrics::gauge!("reserva_subscription_lag_events", "subscription" => name.clone())
        .set(lag.lag_events as f64);
    metrics::gauge!("reserva_subscription_lag_seconds", "subscription" => name.clone())
        .set(lag.lag_seconds);
    metrics::gauge!("reserva_subscription_position", "subscription" => name.clone())
        .set(lag.position as f64);
    metrics::gauge!("reserva_dead_letters_open", "subscription" => name)
        .set(lag.open_dead_letters as f64);
    Ok(())
}
