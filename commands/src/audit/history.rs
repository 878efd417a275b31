//! What happened to an aggregate, what it looked like at any moment, and everything one
//! request caused.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::booking::Booking;
use domain::order::Order;
use domain::payment::Payment;
use domain::stock_item::StockItem;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

/// One stored event as an auditor reads it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// Global position.
    pub global_position: i64,
    /// When its transaction began.
    pub recorded_at: DateTime<Utc>,
    /// The aggregate's type.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The aggregate's sequence number of it.
    pub sequence: i64,
    /// The event's variant name.
    pub event_type: String,
    /// Its schema version.
    pub event_version: String,
    /// The event as stored.
    pub payload: Value,
    /// Who, why, which request.
    pub metadata: Value,
    /// Its link in the aggregate's hash chain (hex).
    pub hash: String,
}

const COLUMNS: &str = "global_position, recorded_at, aggregate_type, aggregate_id, sequence, \
    event_type, event_version, payload::jsonb AS payload, metadata::jsonb AS metadata, \
    encode(hash, 'hex') AS hash";

/// The aggregate types the store holds.
pub const TYPES: [&str; 4] = [Order::TYPE, Booking::TYPE, StockItem::TYPE, Payment::TYPE];

/// Events `offset..offset + limit` of one aggregate, in sequence order.
///
/// # Errors
/// Any database error.
pub async fn stream(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    stream_until(pool, aggregate_type, aggregate_id, None, limit, offset).await
}

/// Events `offset..offset + limit` of one aggregate recorded by `until` (all with `None`),
/// in sequence order.
///
/// # Errors
/// Any database error.
pub async fn stream_until(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    until: Option<AsOf>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let (time, position) = match until {
        Some(AsOf::Time(time)) => (Some(time), None),
        Some(AsOf::Position(position)) => (None, Some(position)),
        None => (None, None),
    };
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
           AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
           AND ($4::bigint IS NULL OR global_position <= $4) \
         ORDER BY sequence LIMIT $5 OFFSET $6"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(time)
    .bind(position)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await
}

/// A moment of an aggregate's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Everything recorded at or before this instant.
    Time(DateTime<Utc>),
    /// Everything at or before this global position.
    Position(i64),
}

/// An aggregate's state at a moment, replayed with today's code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateAt {
    /// The aggregate's state (its serialized form).
    pub state: Value,
    /// The last event folded in: its sequence (0 before the first).
    pub sequence: i64,
    /// …and its global position (0 before the first).
    pub global_position: i64,
    /// …and when it was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Why a state could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No aggregate type of that name.
    #[error("no aggregate type {0} (known: order, booking, stock_item, payment)")]
    UnknownType(String),
    /// An event does not decode with today's code.
    #[error("event {sequence} of {aggregate_type}/{aggregate_id} does not decode: {message}")]
    Undecodable {
        /// The aggregate's type.
        aggregate_type: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// The event's sequence.
        sequence: i64,
        /// Why.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The state of `aggregate_type`/`aggregate_id` as of `at`, replayed with today's code;
/// `None` when the aggregate had no event by then.
///
/// # Errors
/// [`ReplayError`].
pub async fn as_of(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    at: AsOf,
) -> Result<Option<StateAt>, ReplayError> {
    let events = stream_until(pool, aggregate_type, aggregate_id, Some(at), i64::MAX, 0).await?;
    let Some(last) = events.last() else {
        return Ok(None);
    };
    let state = fold_json(aggregate_type, aggregate_id, &events)?;
    Ok(Some(StateAt {
        state,
        sequence: last.sequence,
        global_position: last.global_position,
        recorded_at: Some(last.recorded_at),
    }))
}

/// Folds `events` (one aggregate's, in sequence order) with today's code of its type.
///
/// # Errors
/// [`ReplayError::UnknownType`] or [`ReplayError::Undecodable`].
pub fn fold_json(
    aggregate_type: &str,
    aggregate_id: &str,
    events: &[AuditEvent],
) -> Result<Value, ReplayError> {
    match aggregate_type {
        Order::TYPE => fold::<Order>(aggregate_id, events).map(|a| to_value(&a)),
        Booking::TYPE => fold::<Booking>(aggregate_id, events).map(|a| to_value(&a)),
        StockItem::TYPE => fold::<StockItem>(aggregate_id, events).map(|a| to_value(&a)),
        Payment::TYPE => fold::<Payment>(aggregate_id, events).map(|a| to_value(&a)),
        other => Err(ReplayError::UnknownType(other.to_owned())),
    }
}

fn to_value(state: &impl Serialize) -> Value {
    serde_json::to_value(state).unwrap_or(Value::Null)
}

/// `A`'s state after `events`.
pub(crate) fn fold<A: Aggregate>(
    aggregate_id: &str,
    events: &[AuditEvent],
) -> Result<A, ReplayError> {
    let mut state = A::default();
    for event in events {
        state.apply(decode::<A>(aggregate_id, event)?);
    }
    Ok(state)
}

/// `event` (of `A` `aggregate_id`) as today's code reads it.
fn decode<A: Aggregate>(aggregate_id: &str, event: &AuditEvent) -> Result<A::Event, ReplayError> {
    serde_json::from_value(domain::upcast(
        A::TYPE,
        &event.event_type,
        &event.event_version,
        event.payload.clone(),
    ))
    .map_err(|e| ReplayError::Undecodable {
        aggregate_type: A::TYPE.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence: event.sequence,
        message: e.to_string(),
    })
}

/// One change of an order's or booking's status, as its customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    /// The status it moved to (`STARTED`, `PAYMENT_PENDING`, …).
    pub status: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, when the event says (a cancel's reason, a failure's cause).
    pub reason: Option<String>,
}

/// The status changes of order or booking (`aggregate_type`) `id`, oldest first, replayed with
/// today's code; empty when it does not exist.
///
/// # Errors
/// [`ReplayError`].
pub async fn status_history(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
) -> Result<Vec<StatusChange>, ReplayError> {
    let events = stream(pool, aggregate_type, id, i64::MAX, 0).await?;
    match aggregate_type {
        Order::TYPE => changes::<Order>(id, &events, |o| o.status().map(|s| s.as_str())),
        Booking::TYPE => changes::<Booking>(id, &events, |b| b.status().map(|s| s.as_str())),
        other => Err(ReplayError::UnknownType(other.to_owned())),
    }
}

fn changes<A: Aggregate>(
    id: &str,
    events: &[AuditEvent],
    status: impl Fn(&A) -> Option<&'static str>,
) -> Result<Vec<StatusChange>, ReplayError> {
    let mut state = A::default();
    let mut out: Vec<StatusChange> = Vec::new();
    for event in events {
        state.apply(decode::<A>(id, event)?);
        let Some(now) = status(&state) else { continue };
        if out.last().is_none_or(|last| last.status != now) {
            out.push(StatusChange {
                status: now.to_owned(),
                at: event.recorded_at,
                reason: reason_of(&event.payload),
            });
        }
    }
    Ok(out)
}

/// The `reason` field of an event's payload (`{"Variant": {"reason": …}}`), if any.
fn reason_of(payload: &Value) -> Option<String> {
    payload
        .as_object()?
        .values()
        .next()?
        .get("reason")?
        .as_str()
        .map(str::to_owned)
}

/// One event in a request's causation tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceNode {
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// What it caused, in feed order.
    pub caused: Vec<TraceNode>,
}

/// One cause at the root of a trace: a request (or a job, or a provider's webhook with no
/// known event behind it) and everything it caused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRoot {
    /// The causation id the tree's first events name (a request id, for a request).
    pub cause: String,
    /// Who asked.
    pub actor: Option<String>,
    /// The events it caused directly, and theirs.
    pub caused: Vec<TraceNode>,
}

/// Every event with correlation id `correlation`, as a causation tree: request → its events
/// → what the sagas did about each → … (webhooks hang under the payment that created the
/// intent).
///
/// # Errors
/// Any database error.
pub async fn trace(pool: &PgPool, correlation: &str) -> Result<Vec<TraceRoot>, sqlx::Error> {
    let events: Vec<AuditEvent> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events WHERE metadata->>'correlation_id' = $1 \
         ORDER BY transaction_id, global_position"
    ))
    .bind(correlation)
    .fetch_all(pool)
    .await?;
    Ok(tree(events))
}

/// The key an event is named by in causation ids (`type/id/sequence`).
fn key_of(event: &AuditEvent) -> String {
    format!(
        "{}/{}/{}",
        event.aggregate_type, event.aggregate_id, event.sequence
    )
}

fn cause_of(event: &AuditEvent) -> String {
    meta(event, "causation_id").unwrap_or_default()
}

fn meta(event: &AuditEvent, key: &str) -> Option<String> {
    event
        .metadata
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn tree(events: Vec<AuditEvent>) -> Vec<TraceRoot> {
    let keys: HashMap<String, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (key_of(e), i))
        .collect();
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut roots: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let cause = cause_of(event);
        match keys.get(&cause).filter(|parent| **parent != i) {
            Some(parent) => children.entry(*parent).or_default().push(i),
            None => match roots.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, caused)) => caused.push(i),
                None => roots.push((cause, vec![i])),
            },
        }
    }
    fn build(i: usize, events: &[AuditEvent], children: &BTreeMap<usize, Vec<usize>>) -> TraceNode {
        TraceNode {
            event: events[i].clone(),
            caused: children
                .get(&i)
                .map(|c| c.iter().map(|&j| build(j, events, children)).collect())
                .unwrap_or_default(),
        }
    }
    roots
        .into_iter()
        .map(|(cause, caused)| TraceRoot {
            actor: caused.first().and_then(|&i| meta(&events[i], "actor")),
            cause,
            caused: caused
                .into_iter()
                .map(|i| build(i, &events, &children))
                .collect(),
        })
        .collect()
}
