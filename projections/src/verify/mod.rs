//! Proving a read model right: fold it from the event store and compare it with its table.
//!
//! Inside one snapshot (`REPEATABLE READ`), the model's checkpoint is read, every event of its
//! aggregate type up to that checkpoint is folded in memory (the rebuild's fold) and the live
//! table is compared with the result row by row. The runner commits each batch with its
//! checkpoint, so inside one snapshot the table is exactly the fold of the events up to the
//! checkpoint, and live writes never show as differences. Events the model holds in its dead
//! letters (retrying, parked, waiting, or skipped by an operator) were deliberately not
//! applied and are left out of the fold.
//!
//! A repair runs the same comparison in a transaction that holds the subscription's swap lock
//! exclusively (so the runner waits between batches) and writes the fold's rows over exactly
//! the rows that differ, in that one transaction.

mod fold;

pub use fold::{ColumnDifference, Difference, Fold, MemoryFold};

use feed::{Checkpoint, FeedEvent, checkpoint, locks};
use futures::TryStreamExt;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::read_model::Projection;

/// Events folded per step (and progress report).
const BATCH: usize = 5_000;

/// Where a verify is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Folding the events.
    Folding,
    /// Comparing the table with the fold.
    Comparing,
    /// Writing the fold over the rows that differ.
    Repairing,
    /// Finished.
    Done,
}

/// A verify's progress, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Events folded so far.
    pub events: u64,
    /// Events to fold (the bar's length).
    pub total: u64,
    /// Table rows compared so far.
    pub rows: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            phase: Phase::Folding,
            events: 0,
            total: 0,
            rows: 0,
        }
    }
}

/// What a verify found (and repaired).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The projection.
    pub projection: &'static str,
    /// Its table.
    pub table: &'static str,
    /// The checkpoint the fold stopped at (the model's, in the snapshot).
    #[serde(serialize_with = "position_of")]
    pub checkpoint: Checkpoint,
    /// Events folded.
    pub events: u64,
    /// Rows compared: the table's, and those it lacks.
    pub rows: u64,
    /// Every difference, by row id.
    pub differences: Vec<Difference>,
    /// Rows rewritten by a repair (0 without one).
    pub repaired: usize,
    /// Wall time.
    #[serde(serialize_with = "milliseconds")]
    pub elapsed: Duration,
}

fn position_of<S: serde::Serializer>(at: &Checkpoint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(at.global_position)
}

fn milliseconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

impl Report {
    /// No difference.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }

    /// Rows the table lacks, rows it should not have, rows that differ.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.differences
            .iter()
            .fold((0, 0, 0), |(m, e, d), difference| match difference {
                Difference::Missing { .. } => (m + 1, e, d),
                Difference::Extra { .. } => (m, e + 1, d),
                Difference::Differs { .. } => (m, e, d + 1),
            })
    }

    /// Rows compared per second.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Events folded per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Why a verify stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An event of the store does not fold (today's code cannot apply it).
    #[error("verify of {name}: an event does not fold: {message}")]
    Fold {
        /// The projection.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Verifies `projection`, and with `repair` rewrites the rows that differ; reports progress
/// on `progress` and sets `reserva_projection_verify_differences{projection}`.
///
/// # Errors
/// [`VerifyError`]; a repair that fails writes nothing.
pub async fn verify(
    pool: &PgPool,
    projection: &dyn Projection,
    repair: bool,
    progress: &watch::Sender<Progress>,
) -> Result<Report, VerifyError> {
    let started = Instant::now();
    let name = projection.name();
    let mut conn = locks::streaming_connection(pool, &format!("verify {name}")).await?;
    let mut tx = if repair {
        let mut tx = conn.begin().await?;
        locks::swap_exclusive(&mut tx, name).await?;
        tx
    } else {
        // A rebuild's swap must not land between reading the checkpoint and reading the table
        // (catalog lookups ignore the snapshot): hold the swap lock shared, taken before the
        // snapshot starts, for the whole verify. Closing the connection releases it.
        locks::swap_shared_session(&mut conn, name).await?;
        let mut tx = conn.begin().await?;
        // The transaction's first statement: one snapshot for everything that follows.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        tx
    };
    let at = checkpoint::stored(&mut tx, name).await?;
    let mut fold = projection.fold();
    let events = fold_events(&mut tx, projection, fold.as_mut(), at, progress).await?;
    progress.send_modify(|p| p.phase = Phase::Comparing);
    let (mut differences, compared) = compare(&mut tx, projection, fold.as_mut(), progress).await?;
    let missing = fold.missing();
    let rows = compared + missing.len() as u64;
    differences.extend(missing);
    differences.sort_by(|a, b| a.id().cmp(b.id()));
    let mut repaired = 0;
    if repair && !differences.is_empty() {
        progress.send_modify(|p| p.phase = Phase::Repairing);
        let ids: Vec<String> = differences.iter().map(|d| d.id().to_owned()).collect();
        fold.repair(&mut tx, &ids)
            .await
            .map_err(|e| VerifyError::Fold {
                name,
                message: e.to_string(),
            })?;
        repaired = ids.len();
        // Every process keeping the differing rows in memory forgets them once this commits.
        feed::relay::announce_rewrite(&mut tx, name).await?;
    }
    tx.commit().await?;
    progress.send_modify(|p| p.phase = Phase::Done);
    let left = if repaired > 0 { 0 } else { differences.len() };
    metrics::gauge!("reserva_projection_verify_differences", "projection" => name).set(left as f64);
    Ok(Report {
        projection: name,
        table: projection.table(),
        checkpoint: at,
        events,
        rows,
        differences,
        repaired,
        elapsed: started.elapsed(),
    })
}

/// Folds every event of the model's type up to `at`, but those its dead letters hold.
async fn fold_events(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    fold: &mut dyn Fold,
    at: Checkpoint,
    progress: &watch::Sender<Progress>,
) -> Result<u64, VerifyError> {
    let name = projection.name();
    let types = vec![projection.aggregate_type().to_owned()];
    let held: HashSet<i64> = sqlx::query_scalar(
        "SELECT global_position FROM dead_letters WHERE subscription = $1 \
           AND status IN ('retrying', 'parked', 'waiting', 'skipped')",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 \
           AND (transaction_id, global_position) <= ($2::text::xid8, $3)",
    )
    .bind(&types[0])
    .bind(at.transaction_id.to_string())
    .bind(at.global_position)
    .fetch_one(&mut *conn)
    .await?;
    progress.send_replace(Progress {
        phase: Phase::Folding,
        total: total.max(0) as u64,
        ..Progress::default()
    });
    let mut stream = feed::stream_until(conn, at, &types);
    let mut batch: Vec<FeedEvent> = Vec::with_capacity(BATCH);
    let mut folded = 0;
    loop {
        let next = stream.try_next().await?;
        let done = next.is_none();
        if let Some(event) = next {
            if !held.contains(&event.position()) {
                batch.push(event);
            }
            folded += 1;
        }
        if batch.len() == BATCH || (done && !batch.is_empty()) {
            fold.apply(&batch).map_err(|e| VerifyError::Fold {
                name,
                message: e.to_string(),
            })?;
            batch.clear();
            progress.send_modify(|p| p.events = folded);
        }
        if done {
            break;
        }
    }
    Ok(folded)
}

/// Compares every row of the live table with the fold.
async fn compare(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    fold: &mut dyn Fold,
    progress: &watch::Sender<Progress>,
) -> Result<(Vec<Difference>, u64), VerifyError> {
    let sql = format!(
        "SELECT id::text, to_jsonb(t)::text FROM {} t",
        projection.table()
    );
    let mut rows = sqlx::query_as::<_, (String, String)>(&sql).fetch(conn);
    let mut differences = Vec::new();
    let mut compared = 0;
    while let Some((id, json)) = rows.try_next().await? {
        compared += 1;
        differences.extend(fold.compare(&id, &json));
        if compared % BATCH as u64 == 0 {
            progress.send_modify(|p| p.rows = compared);
        }
    }
    progress.send_modify(|p| p.rows = compared);
    Ok((differences, compared))
}
