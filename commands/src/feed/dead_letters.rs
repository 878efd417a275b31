//! Events a subscription could not handle, and the operator's retry and skip.
//!
//! A parked event blocks only its own aggregate: the aggregate's later events are queued
//! behind it as `waiting` (so they are never applied out of order) while every other aggregate
//! keeps flowing. Operators only *request* a retry or skip; the subscription's runner, which
//! alone may write its read model, carries the request out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use std::collections::HashSet;

use crate::feed::subscription::{self, Handler, SubscriptionOptions};
use crate::feed::{self, FeedEvent};

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
    /// `parked` (failed, heads its aggregate), `waiting` (queued behind), `resolved`,
    /// `skipped`, or `superseded` (a rebuild replaced the read model it was parked from).
    pub status: String,
    /// `retry` or `skip`, asked for and not yet carried out.
    pub requested_action: Option<String>,
    /// Tries so far.
    pub attempts: i32,
    /// The last error.
    pub error: Option<String>,
    /// When it was parked or queued.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT id, subscription, aggregate_type, aggregate_id, global_position, \
    event_type, status, requested_action, attempts, error, created_at, updated_at FROM dead_letters";

/// What an operator can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Handle the parked event again (after fixing what made it fail), then the ones behind it.
    Retry,
    /// Drop the parked event and handle the ones behind it.
    Skip,
}

impl Action {
    fn as_str(self) -> &'static str {
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

/// Dead letters, newest first; `open_only` hides resolved, skipped and superseded ones.
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
           AND (NOT $2 OR status IN ('parked', 'waiting')) \
         ORDER BY id DESC LIMIT $3"
    );
    sqlx::query_as(&sql)
        .bind(subscription)
        .bind(open_only)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Asks the runner to retry or skip the parked event of the aggregate that letter `id` belongs
/// to (a `waiting` letter's request applies to the parked one ahead of it).
///
/// # Errors
/// Any database error.
pub async fn request(pool: &PgPool, id: i64, action: Action) -> Result<Requested, sqlx::Error> {
    let sql = format!(
        "WITH target AS (UPDATE dead_letters SET requested_action = $2, updated_at = now() \
            WHERE id = $1 AND status IN ('parked', 'waiting') RETURNING id) \
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
        Some(letter) if matches!(letter.status.as_str(), "parked" | "waiting") => {
            Requested::Accepted(DeadLetter {
                requested_action: Some(action.as_str().to_owned()),
                ..letter
            })
        }
        Some(letter) => Requested::Closed(letter),
    })
}

/// Aggregates with an open dead letter in `subscription`.
pub(crate) async fn open_aggregates(
    conn: &mut PgConnection,
    subscription: &str,
) -> Result<HashSet<AggregateKey>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT aggregate_type, aggregate_id FROM dead_letters \
         WHERE subscription = $1 AND status IN ('parked', 'waiting')",
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

/// Queues `events` behind their aggregates' parked event (inside the caller's transaction).
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

/// Parks `event` as the failed head of its aggregate (inside the caller's transaction).
pub(crate) async fn park(
    conn: &mut PgConnection,
    subscription: &str,
    event: &FeedEvent,
    attempts: u32,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (subscription, aggregate_type, aggregate_id, transaction_id, \
            global_position, event_type, status, attempts, error) \
         VALUES ($1, $2, $3, $4, $5, $6, 'parked', $7, $8) \
         ON CONFLICT (subscription, global_position) DO UPDATE \
           SET status = 'parked', attempts = EXCLUDED.attempts, error = EXCLUDED.error, \
               updated_at = now()",
    )
    .bind(subscription)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.checkpoint.transaction_id)
    .bind(event.position())
    .bind(&event.event_type)
    .bind(attempts as i32)
    .bind(error)
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Marks every open letter of `subscription` superseded: a rebuild applied their events to a
/// fresh read model (inside the swap's transaction).
pub async fn supersede(conn: &mut PgConnection, subscription: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = 'superseded', requested_action = NULL, updated_at = now() \
         WHERE subscription = $1 AND status IN ('parked', 'waiting')",
    )
    .bind(subscription)
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Carries out every pending request of the handler's subscription. Only the runner holding
/// the subscription's lock may call this.
pub(crate) async fn serve_requests(
    conn: &mut PgConnection,
    handler: &dyn Handler,
    parked: &mut HashSet<AggregateKey>,
    options: &SubscriptionOptions,
) -> Result<(), sqlx::Error> {
    // Aggregates someone asked about, and chains with no parked head left: a drain that
    // resolved or skipped the head and then died before the rest is finished here.
    let requested: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT aggregate_type, aggregate_id FROM dead_letters d \
         WHERE subscription = $1 AND status IN ('parked', 'waiting') \
           AND (requested_action IS NOT NULL OR NOT EXISTS ( \
                SELECT 1 FROM dead_letters p \
                 WHERE p.subscription = d.subscription AND p.aggregate_type = d.aggregate_type \
                   AND p.aggregate_id = d.aggregate_id AND p.status = 'parked'))",
    )
    .bind(handler.name())
    .fetch_all(&mut *conn)
    .await?;
    for (aggregate_type, aggregate_id) in requested {
        let key = AggregateKey {
            aggregate_type,
            aggregate_id,
        };
        if drain(conn, handler, &key, options).await? {
            parked.remove(&key);
        }
    }
    Ok(())
}

/// Works through one aggregate's chain in order. Returns whether it emptied.
async fn drain(
    conn: &mut PgConnection,
    handler: &dyn Handler,
    key: &AggregateKey,
    options: &SubscriptionOptions,
) -> Result<bool, sqlx::Error> {
    let name = handler.name();
    let chain: Vec<(i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, global_position, requested_action FROM dead_letters \
         WHERE subscription = $1 AND aggregate_type = $2 AND aggregate_id = $3 \
           AND status IN ('parked', 'waiting') \
         ORDER BY transaction_id, global_position",
    )
    .bind(name)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .fetch_all(&mut *conn)
    .await?;
    let skip_head = chain
        .iter()
        .find_map(|(_, _, action)| action.as_deref())
        .is_some_and(|action| action == "skip");
    for (index, (id, position, _)) in chain.iter().enumerate() {
        if index == 0 && skip_head {
            set_status(conn, *id, "skipped", 0, None).await?;
            continue;
        }
        let Some(event) = feed::read_positions(conn, &[*position]).await?.pop() else {
            set_status(conn, *id, "skipped", 0, Some("event no longer stored")).await?;
            continue;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            subscription::begin_handling(conn, name).await?;
            match handler.handle(conn, std::slice::from_ref(&event)).await {
                Ok(()) => {
                    set_status(conn, *id, "resolved", attempt, None).await?;
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    break;
                }
                Err(error) => {
                    sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                    if error.is_transient() {
                        return Err(error.into_sqlx());
                    }
                    if attempt < options.max_attempts {
                        tokio::time::sleep(options.retry_delay(attempt)).await;
                        continue;
                    }
                    tracing::error!(subscription = %name, position, %error, "dead letter failed again; it stays parked");
                    set_status(conn, *id, "parked", attempt, Some(&error.to_string())).await?;
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// Sets a letter's outcome (its own statement, or inside the caller's transaction).
async fn set_status(
    conn: &mut PgConnection,
    id: i64,
    status: &str,
    attempts: u32,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = $2, requested_action = NULL, \
            attempts = attempts + $3, error = COALESCE($4, error), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(attempts as i32)
    .bind(error)
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Carries out pending requests here and now when no runner holds the subscription (the
/// service is not running); returns `false`, doing nothing, when one does — it will.
///
/// # Errors
/// Any database error.
pub async fn serve_if_unattended(
    pool: &PgPool,
    handler: &dyn Handler,
    options: &SubscriptionOptions,
) -> Result<bool, sqlx::Error> {
    let name = handler.name();
    let mut conn =
        subscription::dedicated_connection(pool, &format!("dead letters {name}")).await?;
    if !subscription::try_session_lock(&mut conn, subscription::keys::RUN, name).await? {
        return Ok(false);
    }
    let mut parked = open_aggregates(&mut conn, name).await?;
    serve_requests(&mut conn, handler, &mut parked, options).await?;
    Ok(true)
}
