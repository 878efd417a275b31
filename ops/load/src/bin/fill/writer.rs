//! Inserts the generated batches, several at once, without disturbing the feed order.

use anyhow::Context;
use sqlx::{PgConnection, PgPool};
use std::time::Instant;
use tokio::sync::mpsc::Receiver;
use tokio::task::{JoinError, JoinSet};

use crate::record::Batch;

/// Takes the batch's transaction id and a block of `global_position` values from the column's
/// own identity sequence, so later appends by the service carry on after them.
/// The sequence is looked up once, not per value (that costs 5 ms per thousand).
const RESERVE: &str = "SELECT pg_current_xact_id()::text, \
    ARRAY(SELECT nextval(q.seq) \
          FROM (SELECT pg_get_serial_sequence('events', 'global_position')::regclass AS seq) q, \
               generate_series(1, $1))";

/// The batch as one statement: the arrays are zipped server-side, JSON arrives as text and is
/// parsed into the `json` column as is (the shape of the service's own multi-event append).
const INSERT: &str = "INSERT INTO events \
    (global_position, aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata) OVERRIDING SYSTEM VALUE \
    SELECT g, t, i, s, e, v, p::json, m::json \
    FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
                $7::text[], $8::text[]) AS u(g, t, i, s, e, v, p, m)";

/// Writes every batch the generator sends, `writers` transactions at a time; returns the rows
/// written.
///
/// Each batch's transaction id and positions are taken here, one batch at a time in generation
/// order, before its insert runs concurrently with the others. The feed order
/// `(transaction_id, global_position)`, and `global_position` alone, then both follow the order
/// the histories were made in, whichever insert commits first — as in a store that had one
/// writer, only faster to make.
///
/// # Errors
/// Any database error; the batches in flight are rolled back, the committed ones stay.
pub async fn write_all(
    pool: &PgPool,
    batches: &mut Receiver<Batch>,
    writers: usize,
    started: Instant,
) -> anyhow::Result<u64> {
    let mut inserts = JoinSet::new();
    let mut written = 0u64;
    let mut reported = 0u64;
    while let Some(batch) = batches.recv().await {
        if inserts.len() >= writers.max(1) {
            written += joined(inserts.join_next().await)?;
        }
        let mut tx = pool.begin().await.context("starting a transaction")?;
        let (_, positions): (String, Vec<i64>) = sqlx::query_as(RESERVE)
            .bind(batch.len() as i64)
            .fetch_one(&mut *tx)
            .await
            .context("taking a transaction id and positions")?;
        inserts.spawn(async move {
            let rows = insert(&mut tx, &positions, &batch).await?;
            tx.commit().await.context("committing a batch")?;
            Ok(rows)
        });
        if written >= reported + 100_000 {
            reported = written;
            eprintln!("{written} events, {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    while let Some(done) = inserts.join_next().await {
        written += joined(Some(done))?;
    }
    Ok(written)
}

fn joined(done: Option<Result<anyhow::Result<u64>, JoinError>>) -> anyhow::Result<u64> {
    match done {
        Some(done) => done.context("an insert panicked")?,
        None => Ok(0),
    }
}

async fn insert(tx: &mut PgConnection, positions: &[i64], batch: &Batch) -> anyhow::Result<u64> {
    let done = sqlx::query(INSERT)
        .bind(positions)
        .bind(&batch.aggregate_types)
        .bind(&batch.aggregate_ids)
        .bind(&batch.sequences)
        .bind(&batch.event_types)
        .bind(&batch.event_versions)
        .bind(&batch.payloads)
        .bind(&batch.metadata)
        .execute(tx)
        .await
        .context("inserting a batch")?;
    Ok(done.rows_affected())
}
