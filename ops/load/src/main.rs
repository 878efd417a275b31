//! `reserva-load`: drives a running Reserva with concurrent clients and reports throughput and
//! latency percentiles. A benchmark, not a test: it asserts nothing about speed.
//!
//! Closed loop by default (each client sends its next request when the last one is answered:
//! the capacity); with `--rate`, open loop at a steady offered rate (the latency a given load
//! gets, see `paced`).

mod paced;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Restock load against many SKUs.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// SKUs to spread the load over (registered first if missing).
    #[arg(long, default_value_t = 2000)]
    skus: usize,
    /// Client counts to measure, one closed-loop run each (ignored with `--rate`).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Restocks per second to offer, open loop, instead of the closed-loop runs; latency is
    /// counted from when each request was due, so a server that falls behind shows it.
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight at most with `--rate`; when all are busy, later requests wait (and
    /// their wait counts in their latency).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Prefix of the SKUs (lets runs use fresh items).
    #[arg(long, default_value = "LOAD")]
    prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    register(&client, &args).await?;
    if let Some(rate) = args.rate {
        return paced::run(&client, &args, rate).await;
    }
    println!(
        "{:>7} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "clients", "cmds/s", "p50_ms", "p99_ms", "max_ms", "errors"
    );
    for &clients in &args.clients {
        let run = run(&client, &args, clients).await?;
        println!(
            "{:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            clients,
            run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
            percentile(&run.latencies, 0.50),
            percentile(&run.latencies, 0.99),
            percentile(&run.latencies, 1.0),
            run.errors
        );
    }
    Ok(())
}

fn sku(args: &Args, i: usize) -> String {
    format!("{}-{i:06}", args.prefix)
}

/// Registers the SKUs (a 409 means it exists already, which is fine).
async fn register(client: &reqwest::Client, args: &Args) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/stock-items", args.url);
    let chunks: Vec<Vec<usize>> = (0..args.skus)
        .collect::<Vec<_>>()
        .chunks(args.skus.div_ceil(16).max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let tasks = chunks.into_iter().map(|chunk| {
        let client = client.clone();
        let url = url.clone();
        let skus: Vec<String> = chunk.iter().map(|&i| sku(args, i)).collect();
        tokio::spawn(async move {
            for sku in skus {
                let body = json!({"sku": sku, "name": "load item", "kind": "product", "quantity": 0,
                                  "unit_price": {"amount": 100, "currency": "USD"}});
                let status = client.post(&url).json(&body).send().await?.status();
                if !(status.as_u16() == 202 || status.as_u16() == 409) {
                    bail!("registering {sku}: {status}");
                }
            }
            Ok(())
        })
    });
    for task in futures_join(tasks).await {
        task.context("register task")??;
    }
    Ok(())
}

async fn futures_join<T>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await);
    }
    out
}

struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

/// `clients` tasks, each restocking SKUs from its own slice of the catalogue, for the run's
/// duration; client `c` uses SKUs `c, c+clients, …` so clients never contend for one aggregate.
async fn run(client: &reqwest::Client, args: &Args, clients: usize) -> anyhow::Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let client = client.clone();
        let stop = stop.clone();
        let skus: Vec<String> = (c..args.skus)
            .step_by(clients)
            .map(|i| sku(args, i))
            .collect();
        let base = args.url.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let body = json!({"quantity": 1});
            for sku in skus.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let url = format!("{base}/api/v1/stock-items/{sku}/restock");
                let sent = Instant::now();
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let handles: Vec<_> = tasks.collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for handle in handles {
        let (latencies, errors) = handle.await?;
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    Ok(run)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
