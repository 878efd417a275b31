//! `reserva-audit-bench`: the audit's costs on a release build, each beside a reference the
//! caller measures in the same run (see `ops/bench/audit.sh`).
//!
//! - `verify`: `commands::audit::verify` over the whole store (the library call behind
//!   `reserva audit verify`), best of `--runs`.
//! - `coldload`: writes two StockItems of `--events` events each through the command bus
//!   (snapshots on), one whose holds advance an hour apart (its closed reservations are
//!   forgotten after 120 days: bounded) and one whose holds all fall inside 120 days (nothing
//!   forgotten: the state before bounding), then times a cold load of each with and without its
//!   snapshot beside a raw read of its rows.

mod coldload;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::postgres::PgPoolOptions;
use std::time::Instant;

/// Audit benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// The database (its migrations applied).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walks every hash chain (`commands::audit::verify`, no checkpoint key), best of `runs`.
    Verify {
        /// Walks to run; each is printed, then the best.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also write the last run's findings here, one JSON object a line.
        #[arg(long)]
        dump: Option<std::path::PathBuf>,
    },
    /// Writes two long StockItems through the bus, then times their cold loads.
    Coldload(coldload::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    match args.command {
        Command::Verify { runs, dump } => verify(&pool, runs, dump.as_deref()).await,
        Command::Coldload(coldload) => coldload::run(&pool, &coldload).await,
    }
}

async fn verify(
    pool: &sqlx::PgPool,
    runs: usize,
    dump: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut best = 0f64;
    let mut findings = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let verified = commands::audit::verify(pool, 0, None, |_| {}).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let rate = verified.events as f64 / elapsed;
        println!(
            "verify: {} events in {elapsed:.2} s = {rate:.0} events/s ({} findings)",
            verified.events,
            verified.findings.len()
        );
        best = best.max(rate);
        findings = verified.findings;
    }
    if let Some(path) = dump {
        let lines: Vec<String> = findings
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n").context("writing the findings")?;
    }
    println!("verify: best {best:.0} events/s");
    Ok(())
}
