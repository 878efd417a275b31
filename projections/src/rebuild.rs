//! Rebuilding a read model without taking it down.
//!
//! The model is built from position zero into a shadow table while the live table keeps
//! answering and its runner keeps it current. Then, in one transaction that holds the
//! subscription's swap lock (so the live runner pauses between batches), the shadow catches up
//! to the feed's head, takes the live table's name, and the checkpoint moves to that head.
//! Readers block for the instant of the rename and then read the new table; none sees an
//! empty or half-built one.

use feed::{Checkpoint, FeedEvent, Handler, HandlerError, checkpoint, dead_letters, locks};
use futures::TryStreamExt;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

use crate::read_model::Projection;

/// Events per transaction while building.
const BATCH: usize = 5_000;

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
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

/// A rebuild's progress, for progress bars and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Events applied to the shadow so far.
    pub applied: u64,
    /// Events of the model's type when the rebuild started (the bar's length).
    pub total: u64,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Events applied.
    pub events: u64,
    /// Wall time from start to swap.
    pub elapsed: Duration,
    /// Where the live subscription continues from.
    pub checkpoint: Checkpoint,
}

impl Report {
    /// Throughput of the rebuild.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Why a rebuild stopped.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No projection has that name.
    #[error("no projection named {0}")]
    Unknown(String),
    /// Another rebuild of the same projection holds its lock.
    #[error("a rebuild of {0} is already running")]
    AlreadyRunning(String),
    /// The projector could not apply an event; the live table is untouched.
    #[error("rebuild of {name} failed at an event: {message}")]
    Handler {
        /// The projection.
        name: String,
        /// The handler's error.
        message: String,
    },
    /// The database failed; the live table is untouched.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Rebuilds `projection`, reporting progress on `progress`.
///
/// # Errors
/// [`RebuildError`]; on any error the shadow table is dropped and the live one is untouched.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &watch::Sender<Progress>,
) -> Result<Report, RebuildError> {
    let name = projection.name();
    let mut conn = locks::dedicated_connection(pool, &format!("rebuild {name}")).await?;
    if !locks::try_session_lock(&mut conn, locks::keys::REBUILD, name).await? {
        return Err(RebuildError::AlreadyRunning(name.to_owned()));
    }
    let shadow = format!("{}__rebuild", projection.table());
    let result = build_and_swap(pool, &mut conn, projection, &shadow, progress).await;
    if result.is_err() {
        progress.send_modify(|p| p.phase = Phase::Failed);
        // Every transaction of the build is a guard: the one that failed was rolled back when
        // dropped, before this statement runs.
        let dropped = sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut conn)
            .await;
        if let Err(error) = dropped {
            tracing::warn!(%error, %shadow, "could not drop the shadow table of a failed rebuild");
        }
    }
    result
}

// One function on purpose: its phases hand each other the position reached so far, and their
// order (build, index, catch up, lock, last catch-up, swap) is the rebuild's correctness
// argument, best read in one place.
async fn build_and_swap(
    pool: &PgPool,
    conn: &mut PgConnection,
    projection: &dyn Projection,
    shadow: &str,
    progress: &watch::Sender<Progress>,
) -> Result<Report, RebuildError> {
    let started = Instant::now();
    let name = projection.name();
    let live = projection.table();
    let types = vec![projection.aggregate_type().to_owned()];
    progress.send_replace(Progress {
        phase: Phase::Preparing,
        applied: 0,
        total: 0,
    });
    sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
    ))
    .execute(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(&types[0])
        .fetch_one(&mut *conn)
        .await?;
    progress.send_replace(Progress {
        phase: Phase::Building,
        applied: 0,
        total: total.max(0) as u64,
    });
    let mut at = bulk_build(pool, conn, projection, shadow, &types, progress).await?;
    // Indexes are built once over the loaded rows (about twice as fast as maintaining them
    // row by row), before the catch-up needs the key index.
    let indexes = live_indexes(conn, live).await?;
    for index in &indexes {
        index.create_on(conn, live, shadow).await?;
    }
    tracing::debug!(projection = name, elapsed = ?started.elapsed(), "bulk build done");
    let handler = projection.handler(shadow);

    progress.send_modify(|p| p.phase = Phase::CatchingUp);
    loop {
        let mut tx = conn.begin().await?;
        let events = feed::read_after(&mut tx, at, &types, BATCH as i64).await?;
        at = apply(&mut tx, &handler, &events, at, progress).await?;
        tx.commit().await?;
        if events.len() < BATCH {
            break;
        }
    }

    tracing::debug!(projection = name, elapsed = ?started.elapsed(), "caught up");
    progress.send_modify(|p| p.phase = Phase::Swapping);
    let mut tx = conn.begin().await?;
    locks::swap_exclusive(&mut tx, name).await?;
    // The live runner is between batches now. Everything up to `head` is settled, so the
    // shadow holds exactly the events up to it once this loop ends.
    let head = feed::head(&mut tx)
        .await?
        .unwrap_or(Checkpoint::START)
        .max(at);
    loop {
        let events = feed::read_range(&mut tx, at, head, &types, BATCH as i64).await?;
        at = apply(&mut tx, &handler, &events, at, progress).await?;
        if events.len() < BATCH {
            break;
        }
    }
    let old = format!("{live}__old");
    sqlx::query(&format!("DROP TABLE IF EXISTS {old}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("ALTER TABLE {live} RENAME TO {old}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {live}"))
        .execute(&mut *tx)
        .await?;
    for index in &indexes {
        index.take_name(&mut tx, live, &old).await?;
    }
    checkpoint::ensure_row(&mut tx, name).await?;
    checkpoint::store(&mut tx, name, head).await?;
    dead_letters::supersede(&mut tx, name).await?;
    // Every process keeping the old table's rows in memory forgets them once this commits.
    feed::relay::announce_rewrite(&mut tx, name).await?;
    tx.commit().await?;
    sqlx::query(&format!("DROP TABLE {old}"))
        .execute(&mut *conn)
        .await?;
    let applied = progress.borrow().applied;
    progress.send_modify(|p| p.phase = Phase::Done);
    Ok(Report {
        events: applied,
        elapsed: started.elapsed(),
        checkpoint: head,
    })
}

/// One index of the live table, to be rebuilt on the shadow under a temporary name and to
/// take its name back at the swap, so that index and constraint names never drift.
struct LiveIndex {
    name: String,
    definition: String,
    primary_key: bool,
}

const SHADOW_SUFFIX: &str = "__rebuild";

async fn live_indexes(conn: &mut PgConnection, live: &str) -> Result<Vec<LiveIndex>, sqlx::Error> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid), x.indisprimary \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = $1::regclass ORDER BY i.relname",
    )
    .bind(live)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, definition, primary_key)| LiveIndex {
            name,
            definition,
            primary_key,
        })
        .collect())
}

impl LiveIndex {
    /// Builds this index on `shadow` as `<name>__rebuild`.
    async fn create_on(
        &self,
        conn: &mut PgConnection,
        live: &str,
        shadow: &str,
    ) -> Result<(), sqlx::Error> {
        let temporary = format!("{}{SHADOW_SUFFIX}", self.name);
        // pg_get_indexdef: `CREATE [UNIQUE] INDEX <name> ON [<schema>.]<table> USING …`.
        let definition = self
            .definition
            .replacen(
                &format!("INDEX {} ON ", self.name),
                &format!("INDEX {temporary} ON "),
                1,
            )
            .replacen(&format!(".{live} USING "), &format!(".{shadow} USING "), 1)
            .replacen(&format!(" {live} USING "), &format!(" {shadow} USING "), 1);
        sqlx::query(&definition).execute(&mut *conn).await?;
        if self.primary_key {
            sqlx::query(&format!(
                "ALTER TABLE {shadow} ADD CONSTRAINT {temporary} PRIMARY KEY USING INDEX {temporary}"
            ))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Inside the swap: the old table's index (now on `old`) gives up the name, the rebuilt
    /// one takes it.
    async fn take_name(
        &self,
        conn: &mut PgConnection,
        live: &str,
        old: &str,
    ) -> Result<(), sqlx::Error> {
        let temporary = format!("{}{SHADOW_SUFFIX}", self.name);
        let retired = format!("{}__old", self.name);
        let statements = if self.primary_key {
            [
                format!(
                    "ALTER TABLE {old} RENAME CONSTRAINT {} TO {retired}",
                    self.name
                ),
                format!(
                    "ALTER TABLE {live} RENAME CONSTRAINT {temporary} TO {}",
                    self.name
                ),
            ]
        } else {
            [
                format!("ALTER INDEX {} RENAME TO {retired}", self.name),
                format!("ALTER INDEX {temporary} RENAME TO {}", self.name),
            ]
        };
        for statement in statements {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Streams every settled event of the model's type on a second connection while this one
/// folds them in memory ([`crate::read_model::Bulk`]), then writes each row once: reading and folding overlap, and
/// the table sees one insert per row instead of a rewrite per batch.
async fn bulk_build(
    pool: &PgPool,
    conn: &mut PgConnection,
    projection: &dyn Projection,
    shadow: &str,
    types: &[String],
    progress: &watch::Sender<Progress>,
) -> Result<Checkpoint, RebuildError> {
    let name = projection.name();
    let mut reader = locks::streaming_connection(pool, &format!("rebuild {name} reader")).await?;
    // The stream sorts one type's events of the whole table; with the default 4 MB it spills
    // to disk (an external merge) before the first row arrives.
    sqlx::query("SET work_mem = '256MB'")
        .execute(&mut reader)
        .await?;
    let (sender, mut batches) = mpsc::channel::<Result<Vec<FeedEvent>, sqlx::Error>>(4);
    let types_owned = types.to_vec();
    let read = tokio::spawn(async move {
        let mut stream = feed::stream_all(&mut reader, &types_owned);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match stream.try_next().await {
                Ok(Some(event)) => {
                    batch.push(event);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if sender.send(Ok(full)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    if !batch.is_empty() {
                        let _ = sender.send(Ok(batch)).await;
                    }
                    return;
                }
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    let handler_error = |e: HandlerError| RebuildError::Handler {
        name: name.to_owned(),
        message: e.to_string(),
    };
    let mut bulk = projection.bulk(shadow);
    let mut at = Checkpoint::START;
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        let Some(last) = batch.last() else { continue };
        at = last.checkpoint;
        bulk.apply(conn, &batch).await.map_err(handler_error)?;
        progress.send_modify(|p| p.applied += batch.len() as u64);
    }
    read.abort();
    tracing::debug!(
        projection = name,
        rows_in_memory = true,
        "folded; writing rows"
    );
    bulk.flush(conn).await.map_err(handler_error)?;
    Ok(at)
}

/// Applies one batch to the shadow (inside the caller's transaction).
async fn apply(
    conn: &mut PgConnection,
    handler: &Arc<dyn Handler>,
    events: &[FeedEvent],
    at: Checkpoint,
    progress: &watch::Sender<Progress>,
) -> Result<Checkpoint, RebuildError> {
    let Some(last) = events.last() else {
        return Ok(at);
    };
    handler
        .handle(conn, events)
        .await
        .map_err(|e| RebuildError::Handler {
            name: handler.name().to_owned(),
            message: e.to_string(),
        })?;
    progress.send_modify(|p| p.applied += events.len() as u64);
    Ok(last.checkpoint)
}
