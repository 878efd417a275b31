//! `reserva-fill`: writes a large, valid event history straight into the event store, so that
//! projection rebuilds and feed readers can be measured against a million events without
//! spending an hour driving the API; `--scan` measures how fast the table can be read back.
//!
//! Every event is decided by the domain aggregates themselves and serialized as cqrs-es would,
//! so a filled store replays exactly like one the service wrote.

mod buyer;
mod catalogue;
mod history;
mod purchase;
mod record;
mod scan;
mod writer;

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
    /// Concurrent insert transactions (each holds one connection).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    writers: u32,
    /// Measure the sequential read rate in feed order instead of filling.
    #[arg(long)]
    scan: bool,
    /// Scans to run with `--scan`; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = PgPoolOptions::new()
        .max_connections(args.writers + 1)
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
    let (sender, mut batches) = mpsc::channel::<Batch>(args.writers as usize * 2);
    let recorder = Recorder::new(args.batch as usize, sender);
    let generator = tokio::task::spawn_blocking(move || history::generate(&plan, recorder));
    let written = writer::write_all(pool, &mut batches, args.writers as usize, started).await?;
    let counts = generator.await.context("the generator panicked")??;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fill: {written} events in {elapsed:.2} s = {:.0} events/s",
        written as f64 / elapsed
    );
    for (aggregate_type, count) in &counts {
        println!("  {aggregate_type:<10} {count:>9}");
    }
    Ok(())
}
