//! Audit of the event store: what happened to an aggregate and why, its state at any moment,
//! everything one request caused, and proof that nobody rewrote any of it.
//!
//! # Layout
//! - [`history`]: an aggregate's events, its state as of a time or position, a request's
//!   causation tree.
//! - [`chain`]: walking the hash chains the database keeps (migration 0013).
//! - [`checkpoints`]: signed checkpoints of the chain heads, and checking them.
//! - [`replay`]: today's code against yesterday's events.

pub mod chain;
pub mod checkpoints;
pub mod history;
pub mod replay;

pub use checkpoints::{AuditKey, Signed, sign};

use serde::Serialize;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// What kind of tampering a finding shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An event's columns no longer hash to its stored hash.
    Modified,
    /// Events are missing from a chain, or from a signed window.
    Deleted,
    /// An aggregate's events are in the feed in another order than their sequence.
    Reordered,
    /// Events appear in a window a checkpoint signed without them.
    Inserted,
    /// A checkpoint was altered, or was not signed with this key.
    Checkpoint,
}

/// One thing `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What it is.
    pub kind: FindingKind,
    /// The aggregate's type (empty for a checkpoint).
    pub aggregate_type: String,
    /// The aggregate's id, or `checkpoint <id>`.
    pub aggregate_id: String,
    /// The event's sequence, when one event is meant.
    pub sequence: Option<i64>,
    /// The event's global position, when known.
    pub global_position: Option<i64>,
    /// What exactly does not hold.
    pub detail: String,
}

impl Finding {
    fn checkpoint(id: i64, detail: &str) -> Self {
        Self {
            kind: FindingKind::Checkpoint,
            aggregate_type: String::new(),
            aggregate_id: format!("checkpoint {id}"),
            sequence: None,
            global_position: None,
            detail: detail.to_owned(),
        }
    }

    fn under_checkpoint(
        id: i64,
        kind: FindingKind,
        (aggregate_type, aggregate_id): &(String, String),
        sequence: Option<i64>,
        detail: String,
    ) -> Self {
        Self {
            kind,
            aggregate_type: aggregate_type.clone(),
            aggregate_id: aggregate_id.clone(),
            sequence,
            global_position: None,
            detail: format!("under checkpoint {id}: {detail}"),
        }
    }
}

/// What a verify of the store found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Events whose chain was checked.
    pub events: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Everything that does not hold, chain findings first.
    pub findings: Vec<Finding>,
    /// Wall time.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Verified {
    /// Nothing found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Events checked per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Verifies the store: every hash chain of the aggregates with events at or after `since`
/// (all with 0), then every signed checkpoint (their signatures only when `key` is given),
/// reporting the events checked so far to `progress`.
///
/// # Errors
/// Any database error.
pub async fn verify(
    pool: &PgPool,
    since: i64,
    key: Option<&AuditKey>,
    progress: impl FnMut(u64),
) -> Result<Verified, sqlx::Error> {
    let started = Instant::now();
    let mut conn = feed::locks::streaming_connection(pool, "audit verify").await?;
    let (mut findings, events) = chain::walk(&mut conn, since, progress).await?;
    let (checkpoint_findings, checkpoints) = checkpoints::verify(&mut conn, key).await?;
    findings.extend(checkpoint_findings);
    Ok(Verified {
        events,
        checkpoints,
        findings,
        elapsed: started.elapsed(),
    })
}
