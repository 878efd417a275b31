//! `reserva-fill`: writes a large, valid event history straight into the event store, so that
//! projection rebuilds and feed readers can be measured against a million events without
//! spending an hour driving the API; `--scan` measures how fast the table can be read back.
//!
//! Every event is decided by the domain aggregates themselves and serialized as cqrs-es would,
//! so a filled store replays exactly like one the service wrote.

mod catalogue;
mod history;
mod purchase;
mod record;
mod scan;

use anyhow::{Context, bail};
use clap::Parser;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Instant;
use tokio::sync::mpsc;

use crate::history::Plan;
use crate::record::{Batch, Recorder};

/// Fill an empty event store with generated histories, or measure its read rate.
#[derive(Debug, Parser)]
struct Args {
    /// The database (its migrations applied).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Events to write.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Stock items registered before any purchase (every fifth is a time slot).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    stock_items: u32,
    /// Purchases in flight at once, interleaving their events in the feed.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    open_purchases: u32,
    /// Seed of the generator: one seed always writes the same rows.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rows per INSERT statement (each its own transaction).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Measure the sequential read rate in feed order instead of filling.
    #[arg(long)]
    scan: bool,
    /// Scans to run with `--scan`; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The batch as one statement: the arrays are zipped server-side, JSON arrives as text and is
/// parsed into the `json` column as is (the same shape as the service's own multi-event append).
const INSERT: &str = "INSERT INTO events \
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
    SELECT t, i, s, e, v, p::json, m::json \
    FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
      AS u(t, i, s, e, v, p, m)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    if args.scan {
        return scan::scan(&pool, args.runs).await;
    }
    fill(&pool, &args).await
}

async fn fill(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let existing: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
        .fetch_one(pool)
        .await
        .context("reading the events table (are the migrations applied?)")?;
    if existing {
        bail!("the events table is not empty; fill a fresh database so ids cannot collide");
    }
    let plan = Plan {
        events: args.events,
        stock_items: args.stock_items as usize,
        open_purchases: args.open_purchases as usize,
        seed: args.seed,
    };
    let started = Instant::now();
    // A short queue: generation overlaps the inserts without buffering the whole history.
    let (sender, mut batches) = mpsc::channel::<Batch>(4);
    let recorder = Recorder::new(args.batch as usize, sender);
    let generator = tokio::task::spawn_blocking(move || history::generate(&plan, recorder));
    let mut written = 0u64;
    // One writer, one batch at a time: transaction ids then follow generation order, so the
    // feed order (transaction_id, global_position) is the order the histories were made in.
    while let Some(batch) = batches.recv().await {
        written += insert(pool, &batch).await?;
        if written % 100_000 < batch.len() as u64 {
            eprintln!("{written} events, {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    let recorder = generator.await.context("the generator panicked")??;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fill: {written} events in {elapsed:.2} s = {:.0} events/s",
        written as f64 / elapsed
    );
    for (aggregate_type, count) in &recorder.counts {
        println!("  {aggregate_type:<10} {count:>9}");
    }
    Ok(())
}

async fn insert(pool: &PgPool, batch: &Batch) -> anyhow::Result<u64> {
    let done = sqlx::query(INSERT)
        .bind(&batch.aggregate_types)
        .bind(&batch.aggregate_ids)
        .bind(&batch.sequences)
        .bind(&batch.event_types)
        .bind(&batch.event_versions)
        .bind(&batch.payloads)
        .bind(&batch.metadata)
        .execute(pool)
        .await
        .context("inserting a batch")?;
    Ok(done.rows_affected())
}
