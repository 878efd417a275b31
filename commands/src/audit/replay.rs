//! Today's code against yesterday's events: the check to run before deploying a domain change.
//!
//! Every event is decoded (through the upcasters) and applied with the code as built; every
//! stored snapshot is compared with the state folded from the events it claims to summarize.

use cqrs_es::Aggregate;
use domain::booking::Booking;
use domain::order::Order;
use domain::payment::Payment;
use domain::stock_item::StockItem;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// What replay found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Today's code cannot decode the event (even after upcasting).
    Undecodable,
    /// Today's code panicked applying it.
    Unappliable,
    /// A stored snapshot is not the state its events fold to.
    SnapshotDiffers,
    /// Events of an aggregate type today's code does not know.
    UnknownType,
}

/// One thing replay found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What.
    pub kind: ProblemKind,
    /// The aggregate's type.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The event's (or the snapshot's) sequence.
    pub sequence: i64,
    /// The event's type, for an event.
    pub event_type: Option<String>,
    /// Why.
    pub detail: String,
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// Aggregates loaded.
    pub aggregates: u64,
    /// Events decoded and applied.
    pub events: u64,
    /// Snapshots compared.
    pub snapshots: u64,
    /// Snapshots that differed and were deleted (never on a dry run).
    pub snapshots_dropped: u64,
    /// Everything that does not hold.
    pub problems: Vec<Problem>,
    /// Wall time.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Replayed {
    /// Nothing found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One aggregate being folded, whatever its type.
trait Fold: Send {
    fn apply(
        &mut self,
        event_type: &str,
        event_version: &str,
        payload: &str,
    ) -> Result<(), (ProblemKind, String)>;
    fn state(&self) -> Value;
}

struct Folding<A>(A);

impl<A: Aggregate> Fold for Folding<A> {
    fn apply(
        &mut self,
        event_type: &str,
        event_version: &str,
        payload: &str,
    ) -> Result<(), (ProblemKind, String)> {
        let event: A::Event = domain::upcast::decode(A::TYPE, event_type, event_version, payload)
            .map_err(|e| (ProblemKind::Undecodable, e.to_string()))?;
        std::panic::catch_unwind(AssertUnwindSafe(|| self.0.apply(event))).map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".to_owned());
            (ProblemKind::Unappliable, message)
        })
    }

    fn state(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or(Value::Null)
    }
}

fn folding(aggregate_type: &str) -> Option<Box<dyn Fold>> {
    Some(match aggregate_type {
        Order::TYPE => Box::new(Folding(Order::default())),
        Booking::TYPE => Box::new(Folding(Booking::default())),
        StockItem::TYPE => Box::new(Folding(StockItem::default())),
        Payment::TYPE => Box::new(Folding(Payment::default())),
        _ => return None,
    })
}

const EVENTS: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload::text FROM events \
     WHERE ($1::text IS NULL OR (aggregate_type = $1 AND aggregate_id = $2)) \
     ORDER BY aggregate_type, aggregate_id, sequence";

const SNAPSHOTS: &str = "SELECT aggregate_type, aggregate_id, sequence, payload \
     FROM aggregate_snapshots \
     WHERE ($1::text IS NULL OR (aggregate_type = $1 AND aggregate_id = $2))";

/// What to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One aggregate.
    One(&'a str, &'a str),
    /// Every aggregate; `dry_run: false` also deletes the snapshots that differ, so the next
    /// load folds from events and writes a right one.
    All {
        /// Only report.
        dry_run: bool,
    },
}

type Key = (String, String);

/// One aggregate's fold in progress.
struct Current {
    key: Key,
    fold: Option<Box<dyn Fold>>,
    broken: bool,
}

/// The replay's state between rows: the snapshots still to compare, the aggregate being
/// folded, and what was found so far.
struct Walk {
    snapshots: HashMap<Key, (i64, Value)>,
    current: Option<Current>,
    differing: Vec<Key>,
    report: Replayed,
}

impl Walk {
    fn new(snapshots: HashMap<Key, (i64, Value)>) -> Self {
        Self {
            snapshots,
            current: None,
            differing: Vec::new(),
            report: Replayed {
                aggregates: 0,
                events: 0,
                snapshots: 0,
                snapshots_dropped: 0,
                problems: Vec::new(),
                elapsed: Duration::ZERO,
            },
        }
    }

    /// Folds one event row (rows arrive ordered by aggregate, then sequence).
    fn row(&mut self, row: &PgRow) -> Result<(), sqlx::Error> {
        let key: Key = (row.try_get(0)?, row.try_get(1)?);
        let sequence: i64 = row.try_get(2)?;
        if self.current.as_ref().is_none_or(|c| c.key != key) {
            self.start(key.clone(), sequence);
        }
        let Some(c) = self.current.as_mut() else {
            return Ok(());
        };
        let Some(fold) = c.fold.as_mut().filter(|_| !c.broken) else {
            return Ok(());
        };
        let event_type: String = row.try_get(3)?;
        let applied = fold.apply(&event_type, row.try_get(4)?, row.try_get(5)?);
        self.report.events += 1;
        match applied {
            Err((kind, detail)) => {
                // Later events of a broken aggregate would only repeat the finding, and its
                // snapshot cannot be checked.
                c.broken = true;
                self.snapshots.remove(&key);
                self.report
                    .problems
                    .push(problem(&key, kind, sequence, Some(event_type), detail));
            }
            Ok(()) => {
                if self
                    .snapshots
                    .get(&key)
                    .is_some_and(|(at, _)| *at == sequence)
                {
                    let folded = fold.state();
                    if let Some((at, stored)) = self.snapshots.remove(&key) {
                        self.compare(&key, at, &stored, folded);
                    }
                }
            }
        }
        Ok(())
    }

    /// Begins the next aggregate.
    fn start(&mut self, key: Key, sequence: i64) {
        self.report.aggregates += 1;
        let fold = folding(&key.0);
        if fold.is_none() {
            self.report.problems.push(problem(
                &key,
                ProblemKind::UnknownType,
                sequence,
                None,
                "no such aggregate type".into(),
            ));
        }
        self.current = Some(Current {
            key,
            fold,
            broken: false,
        });
    }

    fn compare(&mut self, key: &Key, at: i64, stored: &Value, folded: Value) {
        self.report.snapshots += 1;
        if &folded != stored {
            self.differing.push(key.clone());
            self.report.problems.push(problem(
                key,
                ProblemKind::SnapshotDiffers,
                at,
                None,
                format!("stored {stored}, events fold to {folded}"),
            ));
        }
    }

    /// Snapshots never reached are past the end of their stream (or of a stream that no
    /// longer exists).
    fn finish(mut self) -> (Replayed, Vec<Key>) {
        for (key, (at, _)) in std::mem::take(&mut self.snapshots) {
            self.differing.push(key.clone());
            self.report.snapshots += 1;
            self.report.problems.push(problem(
                &key,
                ProblemKind::SnapshotDiffers,
                at,
                None,
                "the snapshot is past the aggregate's last event".into(),
            ));
        }
        (self.report, self.differing)
    }
}

/// Replays `scope` with today's code, reporting the events replayed so far to `progress`.
///
/// # Errors
/// Any database error.
pub async fn replay(
    pool: &PgPool,
    scope: Scope<'_>,
    mut progress: impl FnMut(u64),
) -> Result<Replayed, sqlx::Error> {
    let started = Instant::now();
    let (one_type, one_id) = match scope {
        Scope::One(t, i) => (Some(t), Some(i)),
        Scope::All { .. } => (None, None),
    };
    let mut walk = Walk::new(stored_snapshots(pool, one_type, one_id).await?);
    let mut conn = feed::locks::streaming_connection(pool, "replay").await?;
    let mut rows = sqlx::query(EVENTS)
        .bind(one_type)
        .bind(one_id)
        .fetch(&mut conn);
    let mut reported = 0;
    while let Some(row) = rows.try_next().await? {
        walk.row(&row)?;
        if walk.report.events >= reported + 100_000 {
            reported = walk.report.events;
            progress(reported);
        }
    }
    drop(rows);
    let (mut report, differing) = walk.finish();
    progress(report.events);
    if let Scope::All { dry_run: false } = scope {
        for (aggregate_type, aggregate_id) in &differing {
            sqlx::query(
                "DELETE FROM aggregate_snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .execute(&mut conn)
            .await?;
            report.snapshots_dropped += 1;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn stored_snapshots(
    pool: &PgPool,
    one_type: Option<&str>,
    one_id: Option<&str>,
) -> Result<HashMap<Key, (i64, Value)>, sqlx::Error> {
    sqlx::query(SNAPSHOTS)
        .bind(one_type)
        .bind(one_id)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|row| {
            Ok((
                (row.try_get(0)?, row.try_get(1)?),
                (row.try_get(2)?, row.try_get(3)?),
            ))
        })
        .collect()
}

fn problem(
    (aggregate_type, aggregate_id): &Key,
    kind: ProblemKind,
    sequence: i64,
    event_type: Option<String>,
    detail: String,
) -> Problem {
    Problem {
        kind,
        aggregate_type: aggregate_type.clone(),
        aggregate_id: aggregate_id.clone(),
        sequence,
        event_type,
        detail,
    }
}
