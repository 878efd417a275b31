//! `reserva-saga-latency`: how long an order takes from `POST /orders` to `COMPLETED` when the
//! saga runs against the simulated gateway. A benchmark, not a test: it asserts nothing.
//!
//! Closed loop per customer: place a one-line order, poll `GET /orders/{id}` until it ends,
//! then place the next. The poll only paces the loop; latency is read afterwards from the
//! event store (`recorded_at` of the order's, its payment's and its stock item's events), so
//! it does not depend on the poll interval or on the orders projection.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

mod report;
mod timeline;

use report::{Point, print_breakdown, print_summary};
use timeline::{measure, saga_batches};

/// Saga latency at several customer counts.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The service's database, read for the events' `recorded_at`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Customer counts to measure, one closed-loop run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    customers: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of unrecorded load (at the largest customer count) before the first run.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// SKUs to spread orders over (registered with 1 000 000 units each if missing); customer
    /// `c` orders SKUs `c, c+N, …`, so customers never contend for one stock item.
    #[arg(long, default_value_t = 1000)]
    skus: usize,
    /// Prefix of the SKUs.
    #[arg(long, default_value = "SAGA")]
    prefix: String,
    /// Shortest pause between two polls of one order.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Most polls per second of all customers together; with many customers each one polls
    /// less often than `--poll-ms` so the poll load stays bounded.
    #[arg(long, default_value_t = 1000)]
    max_polls: u64,
    /// How long one order may take before its customer moves on.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// Statuses an order ends in.
const ENDED: [&str; 6] = [
    "COMPLETED",
    "STOCK_FAILED",
    "PAYMENT_FAILED",
    "CANCELLED",
    "EXPIRED",
    "REFUNDED",
];

/// Order quantity × 1500 MXN never ends in `02` minor units, which the simulation declines.
const UNIT_PRICE_MINOR: i64 = 1500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if args.customers.iter().any(|&c| c == 0 || c > args.skus) {
        bail!("every customer count must be between 1 and --skus");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to --database-url")?;
    register(&client, &args).await?;
    if let Some(&most) = args.customers.iter().max()
        && args.warmup > 0
    {
        run(&client, &args, most, Duration::from_secs(args.warmup)).await?;
    }
    let mut results = Vec::new();
    for &customers in &args.customers {
        let run = run(&client, &args, customers, Duration::from_secs(args.seconds)).await?;
        if run.placed.iter().any(|p| p.seen.is_none()) {
            // Orders given up on may still finish: give them a moment before reading.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let timelines = measure(&pool, &run.placed).await?;
        let batches = saga_batches(&pool, &run.placed).await?;
        results.push(Point {
            customers,
            run,
            timelines,
            batches,
        });
    }
    print_summary(&results);
    for point in &results {
        print_breakdown(point);
    }
    Ok(())
}

fn sku(args: &Args, i: usize) -> String {
    format!("{}-{i:06}", args.prefix.to_ascii_uppercase())
}

/// Registers the SKUs with plenty of stock (a 409 means it exists already).
async fn register(client: &reqwest::Client, args: &Arc<Args>) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..16)
        .map(|part| {
            let client = client.clone();
            let args = Arc::clone(args);
            tokio::spawn(async move {
                let url = format!("{}/api/v1/stock-items", args.url);
                for i in (part..args.skus).step_by(16) {
                    let body = json!({"sku": sku(&args, i), "name": "saga latency item",
                        "kind": "product", "quantity": 1_000_000,
                        "unit_price": {"amount": UNIT_PRICE_MINOR, "currency": "MXN"}});
                    let status = client.post(&url).json(&body).send().await?.status();
                    if !matches!(status.as_u16(), 202 | 409) {
                        bail!("registering {}: {status}", sku(&args, i));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("register task")??;
    }
    Ok(())
}

/// One order as the client saw it.
struct Placed {
    id: Uuid,
    sku: String,
    /// Just before the POST was sent.
    sent: DateTime<Utc>,
    /// When a poll first saw it ended (`None`: given up after `--timeout-ms`).
    seen: Option<DateTime<Utc>>,
}

struct Run {
    placed: Vec<Placed>,
    post_errors: usize,
    polls: u64,
    elapsed: Duration,
}

/// `customers` closed loops for `length`; each finishes the order it is waiting for.
async fn run(
    client: &reqwest::Client,
    args: &Arc<Args>,
    customers: usize,
    length: Duration,
) -> anyhow::Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let per_customer = Duration::from_secs_f64(customers as f64 / args.max_polls.max(1) as f64);
    let interval = Duration::from_millis(args.poll_ms).max(per_customer);
    let started = Instant::now();
    let handles: Vec<_> = (0..customers)
        .map(|c| {
            let skus: Vec<String> = (c..args.skus)
                .step_by(customers)
                .map(|i| sku(args, i))
                .collect();
            let customer = Customer {
                client: client.clone(),
                args: Arc::clone(args),
                id: Uuid::new_v4(),
                interval,
            };
            let stop = Arc::clone(&stop);
            tokio::spawn(async move { customer.shop(&skus, &stop).await })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        placed: Vec::new(),
        post_errors: 0,
        polls: 0,
        elapsed: Duration::ZERO,
    };
    for handle in handles {
        let (placed, post_errors, polls) = handle.await?;
        run.placed.extend(placed);
        run.post_errors += post_errors;
        run.polls += polls;
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

struct Customer {
    client: reqwest::Client,
    args: Arc<Args>,
    id: Uuid,
    interval: Duration,
}

impl Customer {
    /// Orders until `stop`: the placed orders, failed POSTs and polls made.
    async fn shop(&self, skus: &[String], stop: &AtomicBool) -> (Vec<Placed>, usize, u64) {
        let (mut placed, mut post_errors, mut polls) = (Vec::new(), 0, 0);
        for sku in skus.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let sent = Utc::now();
            let Some(order) = self.place(sku).await else {
                post_errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let seen = self.wait_until_ended(order, &mut polls).await;
            placed.push(Placed {
                id: order.0,
                sku: sku.clone(),
                sent,
                seen,
            });
        }
        (placed, post_errors, polls)
    }

    /// Places a one-line order: its id and the position of its OrderPlaced.
    async fn place(&self, sku: &str) -> Option<(Uuid, i64)> {
        let body = json!({"customer_id": self.id, "items": [{"sku": sku, "quantity": 1}]});
        let url = format!("{}/api/v1/orders", self.args.url);
        let response = self.client.post(&url).json(&body).send().await.ok()?;
        if response.status().as_u16() != 202 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        Some((
            body["id"].as_str()?.parse().ok()?,
            body["position"].as_i64()?,
        ))
    }

    /// Polls until the order has ended. `min_position` makes the first poll wait for the
    /// projection to hold the order rather than answer 404.
    async fn wait_until_ended(
        &self,
        (id, position): (Uuid, i64),
        polls: &mut u64,
    ) -> Option<DateTime<Utc>> {
        let url = format!(
            "{}/api/v1/orders/{id}?min_position={position}",
            self.args.url
        );
        let deadline = Instant::now() + Duration::from_millis(self.args.timeout_ms);
        while Instant::now() < deadline {
            tokio::time::sleep(self.interval).await;
            *polls += 1;
            let Ok(response) = self.client.get(&url).send().await else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            let Ok(body) = response.json::<Value>().await else {
                continue;
            };
            if body["status"].as_str().is_some_and(|s| ENDED.contains(&s)) {
                return Some(Utc::now());
            }
        }
        None
    }
}
