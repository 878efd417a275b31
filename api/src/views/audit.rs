//! Audit answers: an aggregate's events and state as of a moment, a request's causation tree,
//! and the customer's timeline of an order or booking.

use chrono::{DateTime, Utc};
use commands::audit::history::{AuditEvent, StateAt, StatusChange, TraceNode, TraceRoot};
use serde::Serialize;
use serde_json::Value;

/// One stored event, everything an auditor sees of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventView {
    /// Its place in the feed.
    pub global_position: i64,
    /// When its transaction began.
    pub recorded_at: DateTime<Utc>,
    /// The aggregate's type (`order`, `booking`, `stock_item`, `payment`).
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Its sequence in the aggregate (1-based).
    pub sequence: i64,
    /// The event's type.
    pub event_type: String,
    /// The schema version it was written under.
    pub event_version: String,
    /// The event as stored (older versions are not upgraded here): `{"Variant": {…}}`, or
    /// `"Variant"` for one without fields.
    pub payload: Value,
    /// Who, why, which request: `correlation_id`, `causation_id`, `actor`, `request_id`.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Its link in the aggregate's hash chain (hex SHA-256).
    pub hash: String,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            global_position: e.global_position,
            recorded_at: e.recorded_at,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
            hash: e.hash,
        }
    }
}

/// An aggregate's state at a moment, replayed with today's code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateView {
    /// The state.
    #[schema(value_type = Object)]
    pub state: Value,
    /// The last event in it.
    pub sequence: i64,
    /// Its global position.
    pub global_position: i64,
    /// When it was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
}

impl From<StateAt> for StateView {
    fn from(s: StateAt) -> Self {
        Self {
            state: s.state,
            sequence: s.sequence,
            global_position: s.global_position,
            recorded_at: s.recorded_at,
        }
    }
}

/// One page of an aggregate's events (up to `as_of` when given), and its state then.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditStreamView {
    /// The aggregate's type.
    pub aggregate_type: &'static str,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The events of this page, in sequence order.
    pub items: Vec<AuditEventView>,
    /// 1-based page number.
    pub page: u32,
    /// Events per page.
    pub per_page: u32,
    /// Whether a next page exists.
    pub has_more: bool,
    /// With `?as_of=`: the state after the last event at or before it.
    pub as_of: Option<StateView>,
}

/// One event of a causation tree and what it caused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceNodeView {
    /// The event.
    pub event: AuditEventView,
    /// The events it caused, in feed order.
    #[schema(no_recursion)]
    pub caused: Vec<TraceNodeView>,
}

impl From<TraceNode> for TraceNodeView {
    fn from(n: TraceNode) -> Self {
        Self {
            event: n.event.into(),
            caused: n.caused.into_iter().map(Self::from).collect(),
        }
    }
}

/// One cause at the root of a trace (a request, a job, a webhook) and everything it caused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceRootView {
    /// The causation id the first events name (the request id, for a request).
    pub cause: String,
    /// Who asked.
    pub actor: Option<String>,
    /// What it caused directly, and what that caused.
    pub caused: Vec<TraceNodeView>,
}

/// Everything one correlation id (one request) caused, in every aggregate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceView {
    /// The correlation id.
    pub correlation_id: String,
    /// Events in the trace.
    pub events: usize,
    /// The roots: the request first, then causes with no event behind them.
    pub roots: Vec<TraceRootView>,
}

impl TraceView {
    /// The view of `roots`.
    pub fn new(correlation_id: String, roots: Vec<TraceRoot>) -> Self {
        fn count(nodes: &[TraceNode]) -> usize {
            nodes.iter().map(|n| 1 + count(&n.caused)).sum()
        }
        Self {
            correlation_id,
            events: roots.iter().map(|r| count(&r.caused)).sum(),
            roots: roots
                .into_iter()
                .map(|r| TraceRootView {
                    cause: r.cause,
                    actor: r.actor,
                    caused: r.caused.into_iter().map(TraceNodeView::from).collect(),
                })
                .collect(),
        }
    }
}

/// One change of status, as the customer sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusChangeView {
    /// The status it moved to.
    pub status: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, when there is a reason to give (a cancel's, a failure's).
    pub reason: Option<String>,
}

/// An order's or booking's timeline: its status changes, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// The order's or booking's id.
    pub id: uuid::Uuid,
    /// Its status changes.
    pub changes: Vec<StatusChangeView>,
}

impl HistoryView {
    /// The view of `changes`.
    pub fn new(id: uuid::Uuid, changes: Vec<StatusChange>) -> Self {
        Self {
            id,
            changes: changes
                .into_iter()
                .map(|c| StatusChangeView {
                    status: c.status,
                    at: c.at,
                    reason: c.reason,
                })
                .collect(),
        }
    }
}
