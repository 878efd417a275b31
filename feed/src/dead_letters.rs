//! Events a subscription could not handle, and the operator's retry and skip.
//!
//! A failing event blocks only its own aggregate: the aggregate's later events are queued
//! behind it as `waiting` (so they are never applied out of order) while every other aggregate
//! keeps flowing. The failing head is `retrying` while the runner tries it again with
//! back-off, then `parked` for an operator. Operators only *request* a retry or skip; the
//! subscription's runner, which alone may write its read model, carries the request out (see
//! [`crate::retry`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use std::collections::HashSet;
use std::time::Duration;

use crate::FeedEvent;

/// Statuses of a letter whose event has not been applied (yet): its aggregate is held.
pub const OPEN: [&str; 3] = ["retrying", "parked", "waiting"];

/// Which aggregate an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateKey {
    /// `events.aggregate_type`.
    pub aggregate_type: String,
    /// `events.aggregate_id`.
    pub aggregate_id: String,
}

impl AggregateKey {
    /// The aggregate of `event`.
    pub fn of(event: &FeedEvent) -> Self {
        Self {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
        }
    }
}

/// One row of `dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct DeadLetter {
    /// Its id (for retry and skip).
    pub id: i64,
    /// The subscription that could not handle it.
    pub subscription: String,
    /// The event's aggregate type.
    pub aggregate_type: String,
    /// The event's aggregate id.
    pub aggregate_id: String,
    /// The event's global position.
    pub global_position: i64,
    /// The event's type.
    pub event_type: String,
    /// `retrying` (failed, heads its aggregate, tried again at `next_attempt_at`), `parked`
    /// (failed every try, heads its aggregate until an operator retries or skips it),
    /// `waiting` (queued behind), `resolved`, `skipped`, or `superseded` (a rebuild replaced
    /// the read model it was held from).
    pub status: String,
    /// `retry` or `skip`, asked for and not yet carried out.
    pub requested_action: Option<String>,
    /// Tries so far.
    pub attempts: i32,
    /// When a `retrying` letter is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last error.
    pub error: Option<String>,
    /// When it was parked or queued.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT id, subscription, aggregate_type, aggregate_id, global_position, \
    event_type, status, requested_action, attempts, next_attempt_at, error, created_at, updated_at \
    FROM dead_letters";

/// What an operator can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Handle the held event again now (after fixing what made it fail), then the ones behind
    /// it.
    Retry,
    /// Drop the held event and handle the ones behind it.
    Skip,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Skip => "skip",
        }
    }
}

/// The answer to a retry or skip request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// Recorded; the runner carries it out.
    Accepted(DeadLetter),
    /// No dead letter has that id.
    NotFound,
    /// The letter is already resolved or skipped.
    Closed(DeadLetter),
}

/// Dead letters, newest first; `open_only` shows only those still holding their aggregate.
///
/// # Errors
/// Any database error.
pub async fn list(
    pool: &PgPool,
    subscription: Option<&str>,
    open_only: bool,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let sql = format!(
        "{SELECT} WHERE ($1::text IS NULL OR subscription = $1) \
           AND (NOT $2 OR status IN ('retrying', 'parked', 'waiting')) \
         ORDER BY id DESC LIMIT $3"
    );
    sqlx::query_as(&sql)
        .bind(subscription)
        .bind(open_only)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Asks the runner to retry or skip the held event of the aggregate that letter `id` belongs
/// to (a `waiting` letter's request applies to the one ahead of it).
///
/// # Errors
/// Any database error.
pub async fn request(pool: &PgPool, id: i64, action: Action) -> Result<Requested, sqlx::Error> {
    let sql = format!(
        "WITH target AS (UPDATE dead_letters SET requested_action = $2, updated_at = now() \
            WHERE id = $1 AND status IN ('retrying', 'parked', 'waiting') RETURNING id) \
         {SELECT} WHERE id = $1"
    );
    let letter: Option<DeadLetter> = sqlx::query_as(&sql)
        .bind(id)
        .bind(action.as_str())
        .fetch_optional(pool)
        .await?;
    // The SELECT sees the row as it was before the UPDATE of the same statement.
    Ok(match letter {
        None => Requested::NotFound,
        Some(letter) if OPEN.contains(&letter.status.as_str()) => Requested::Accepted(DeadLetter {
            requested_action: Some(action.as_str().to_owned()),
            ..letter
        }),
        Some(letter) => Requested::Closed(letter),
    })
}

/// Aggregates with an open dead letter in `subscription`.
///
/// # Errors
/// Any database error.
pub async fn open_aggregates(
    conn: &mut PgConnection,
    subscription: &str,
) -> Result<HashSet<AggregateKey>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT aggregate_type, aggregate_id FROM dead_letters \
         WHERE subscription = $1 AND status IN ('retrying', 'parked', 'waiting')",
    )
    .bind(subscription)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(aggregate_type, aggregate_id)| AggregateKey {
            aggregate_type,
            aggregate_id,
        })
        .collect())
}

/// Queues `events` behind their aggregates' held event (inside the caller's transaction).
pub(crate) async fn queue_behind(
    conn: &mut PgConnection,
    subscription: &str,
    events: &[FeedEvent],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&FeedEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO dead_letters (subscription, aggregate_type, aggregate_id, transaction_id, \
            global_position, event_type, status) \
         SELECT $1, t, i, x, g, e, 'waiting' \
         FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]) \
           AS u(t, i, x, g, e) \
         ON CONFLICT (subscription, global_position) DO NOTHING",
    )
    .bind(subscription)
    .bind(column(|e| e.aggregate_type.clone()))
    .bind(column(|e| e.aggregate_id.clone()))
    .bind(
        events
            .iter()
            .map(|e| e.checkpoint.transaction_id)
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(FeedEvent::position).collect::<Vec<_>>())
    .bind(column(|e| e.event_type.clone()))
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Sets `event` aside as the failed head of its aggregate after its first try, to be tried
/// again in `delay` (inside the caller's transaction).
pub(crate) async fn set_aside(
    conn: &mut PgConnection,
    subscription: &str,
    event: &FeedEvent,
    error: &str,
    delay: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (subscription, aggregate_type, aggregate_id, transaction_id, \
            global_position, event_type, status, attempts, error, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'retrying', 1, $7, now() + make_interval(secs => $8)) \
         ON CONFLICT (subscription, global_position) DO UPDATE \
           SET status = 'retrying', attempts = dead_letters.attempts + 1, error = EXCLUDED.error, \
               next_attempt_at = EXCLUDED.next_attempt_at, updated_at = now()",
    )
    .bind(subscription)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.checkpoint.transaction_id)
    .bind(event.position())
    .bind(&event.event_type)
    .bind(error)
    .bind(delay.as_secs_f64())
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Marks every open or skipped letter of `subscription` superseded: a rebuild applied their
/// events to a fresh read model (inside the swap's transaction). Skipped ones too: their
/// events are in the rebuilt model, and `projections verify` counts a `skipped` letter's
/// event as one the model lacks.
///
/// # Errors
/// Any database error.
pub async fn supersede(conn: &mut PgConnection, subscription: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = 'superseded', requested_action = NULL, \
            next_attempt_at = NULL, updated_at = now() \
         WHERE subscription = $1 AND status IN ('retrying', 'parked', 'waiting', 'skipped')",
    )
    .bind(subscription)
    .execute(&mut *conn)
    .await
    .map(drop)
}
