//! What `/admin` answers: projections, rebuilds, verifies, dead letters and sagas on the wire,
//! with their OpenAPI schemas, built from what the crates below report.

use chrono::{DateTime, Utc};
use projections::rebuild::{Phase, Progress};
use projections::status::ProjectionStatus;
use projections::verify::{self, Difference};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::verifier::LastVerify;

/// One projection in `GET /admin/projections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionEntry {
    /// Its name (`orders`, `bookings`, `stock_items`, `payments`).
    pub name: &'static str,
    /// Its live table.
    pub table: &'static str,
    /// Global position of the last event handled (0 before the first).
    pub position: i64,
    /// When the checkpoint last moved.
    #[schema(required)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Settled events after the checkpoint.
    pub lag_events: i64,
    /// Age of the oldest settled event not yet handled (0 when caught up).
    pub lag_seconds: f64,
    /// Dead letters still holding their aggregate (retrying, parked or waiting).
    pub open_dead_letters: i64,
    /// Whether this process holds the projection's runner lock and has started.
    pub running_here: bool,
    /// The latest rebuild started by this process, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildState>,
    /// The latest verify run by this process (scheduled or over HTTP), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<LastVerify>,
}

impl ProjectionEntry {
    /// The entry of `status`, with what this process knows of it.
    pub fn new(
        status: ProjectionStatus,
        running_here: bool,
        rebuild: Option<RebuildState>,
        last_verify: Option<LastVerify>,
    ) -> Self {
        Self {
            name: status.name,
            table: status.table,
            position: status.position,
            updated_at: status.updated_at,
            lag_events: status.lag_events,
            lag_seconds: status.lag_seconds,
            open_dead_letters: status.open_dead_letters,
            running_here,
            rebuild,
            last_verify,
        }
    }
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildPhase {
    /// Creating the shadow table.
    Preparing,
    /// Reading the feed from zero into the shadow.
    Building,
    /// Applying what arrived meanwhile.
    CatchingUp,
    /// Swapping the shadow in.
    Swapping,
    /// Done; the live table is the rebuilt one.
    Done,
    /// Stopped by an error; the live table is untouched.
    Failed,
}

impl From<Phase> for RebuildPhase {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Preparing => Self::Preparing,
            Phase::Building => Self::Building,
            Phase::CatchingUp => Self::CatchingUp,
            Phase::Swapping => Self::Swapping,
            Phase::Done => Self::Done,
            Phase::Failed => Self::Failed,
        }
    }
}

/// A rebuild's progress as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuildState {
    /// Current phase.
    pub phase: RebuildPhase,
    /// Events applied to the shadow table so far.
    pub applied: u64,
    /// Events of the model's type when the rebuild started.
    pub total: u64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RebuildState {
    /// The state of a rebuild at `progress`, failed with `error` if it did.
    pub fn new(progress: Progress, error: Option<String>) -> Self {
        Self {
            phase: progress.phase.into(),
            applied: progress.applied,
            total: progress.total,
            error,
        }
    }
}

/// `202` of `POST /admin/projections/{name}/rebuild`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildStarted {
    /// The projection being rebuilt.
    pub projection: &'static str,
    /// Where to follow its progress (`/admin/projections`).
    pub status: &'static str,
}

/// Differences listed in one verify answer at most (the counts are always complete).
const MAX_LISTED_DIFFERENCES: usize = 1_000;

/// `GET /admin/projections/{name}/verify`: a read model compared with the fold of the events.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    /// The projection.
    projection: &'static str,
    /// Its table.
    table: &'static str,
    /// The checkpoint (global position) the events were folded up to, in the same snapshot
    /// as the table was read.
    position: i64,
    /// `true` when the table equals the fold.
    clean: bool,
    /// Rows the events make that the table lacks.
    missing: usize,
    /// Rows in the table that no events make.
    extra: usize,
    /// Rows whose columns differ.
    differing: usize,
    /// The differences, by row id (at most 1000).
    differences: Vec<VerifyDifference>,
    /// Events folded.
    events: u64,
    /// Rows compared.
    rows: u64,
    /// Wall time in milliseconds.
    elapsed_ms: u64,
    /// Rows compared per second.
    rows_per_second: f64,
}

/// One row that differs.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyDifference {
    /// `missing`, `extra` or `differs`.
    kind: &'static str,
    /// The row's id.
    id: String,
    /// The row by the events (`missing`), or each differing column (`differs`).
    #[schema(value_type = Object)]
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    expected: serde_json::Value,
    /// The row in the table (`extra`).
    #[schema(value_type = Object)]
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    found: serde_json::Value,
    /// The columns that differ, with both values (`differs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    columns: Vec<VerifyColumn>,
}

/// One differing column.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyColumn {
    /// The column.
    column: String,
    /// Its value by the events.
    #[schema(value_type = Object)]
    expected: serde_json::Value,
    /// Its value in the table.
    #[schema(value_type = Object)]
    found: serde_json::Value,
}

impl From<verify::Report> for VerifyReport {
    fn from(report: verify::Report) -> Self {
        let (missing, extra, differing) = report.counts();
        let differences = report
            .differences
            .iter()
            .take(MAX_LISTED_DIFFERENCES)
            .map(|d| match d {
                Difference::Missing { id, expected } => VerifyDifference {
                    kind: "missing",
                    id: id.clone(),
                    expected: expected.clone(),
                    found: serde_json::Value::Null,
                    columns: Vec::new(),
                },
                Difference::Extra { id, found } => VerifyDifference {
                    kind: "extra",
                    id: id.clone(),
                    expected: serde_json::Value::Null,
                    found: found.clone(),
                    columns: Vec::new(),
                },
                Difference::Differs { id, columns } => VerifyDifference {
                    kind: "differs",
                    id: id.clone(),
                    expected: serde_json::Value::Null,
                    found: serde_json::Value::Null,
                    columns: columns
                        .iter()
                        .map(|c| VerifyColumn {
                            column: c.column.clone(),
                            expected: c.expected.clone(),
                            found: c.found.clone(),
                        })
                        .collect(),
                },
            })
            .collect();
        Self {
            projection: report.projection,
            table: report.table,
            position: report.checkpoint.global_position,
            clean: report.is_clean(),
            missing,
            extra,
            differing,
            differences,
            events: report.events,
            rows: report.rows,
            elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            rows_per_second: report.rows_per_second(),
        }
    }
}

/// A held event of a subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
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
    /// `retrying` (tried again at `next_attempt_at`), `parked` (out of tries, until an
    /// operator retries or skips it), `waiting` (behind one of those), `resolved`, `skipped`
    /// or `superseded`.
    pub status: String,
    /// `retry` or `skip`, asked for and not yet carried out.
    #[schema(required)]
    pub requested_action: Option<String>,
    /// Tries so far.
    pub attempts: i32,
    /// When a `retrying` letter is tried next.
    #[schema(required)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last error.
    #[schema(required)]
    pub error: Option<String>,
    /// When it was held.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<feed::dead_letters::DeadLetter> for DeadLetterView {
    fn from(l: feed::dead_letters::DeadLetter) -> Self {
        Self {
            id: l.id,
            subscription: l.subscription,
            aggregate_type: l.aggregate_type,
            aggregate_id: l.aggregate_id,
            global_position: l.global_position,
            event_type: l.event_type,
            status: l.status,
            requested_action: l.requested_action,
            attempts: l.attempts,
            next_attempt_at: l.next_attempt_at,
            error: l.error,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

/// An order's or booking's saga, its state and every step it took.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaView {
    /// The order's or booking's id.
    pub id: Uuid,
    /// `order_saga` or `booking_saga`.
    pub saga_type: String,
    /// Current state.
    pub state: String,
    /// Everything it remembers.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Steps so far.
    pub version: i32,
    /// Its payment, once created.
    #[schema(required)]
    pub payment_id: Option<Uuid>,
    /// First handled event.
    pub created_at: DateTime<Utc>,
    /// Last handled event.
    pub updated_at: DateTime<Utc>,
    /// Every step, oldest first.
    pub history: Vec<SagaStep>,
}

/// One step of a saga's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaStep {
    /// 1-based.
    pub step: i32,
    /// The event's global position.
    pub global_position: i64,
    /// The event's type.
    pub event_type: String,
    /// The state after it.
    pub state: String,
    /// Commands and provider calls with their outcomes.
    #[schema(value_type = Vec<Object>)]
    pub commands: serde_json::Value,
    /// When the step was stored.
    pub recorded_at: DateTime<Utc>,
}

impl From<commands::sagas::store::SagaView> for SagaView {
    fn from(s: commands::sagas::store::SagaView) -> Self {
        Self {
            id: s.id,
            saga_type: s.saga_type,
            state: s.state,
            data: s.data,
            version: s.version,
            payment_id: s.payment_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
            history: s
                .history
                .into_iter()
                .map(|h| SagaStep {
                    step: h.step,
                    global_position: h.global_position,
                    event_type: h.event_type,
                    state: h.state,
                    commands: h.commands,
                    recorded_at: h.recorded_at,
                })
                .collect(),
        }
    }
}
