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
use domain::{OrderId, Owner, PaymentId, ReservationId, Sku};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

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

/// An order's events as recorded; `None` where that event is missing.
#[derive(Debug, sqlx::FromRow)]
struct Timeline {
    order_id: String,
    placed: Option<DateTime<Utc>>,
    saga_placed: Option<DateTime<Utc>>,
    stock_reserved: Option<DateTime<Utc>>,
    order_stock_reserved: Option<DateTime<Utc>>,
    payment_created: Option<DateTime<Utc>>,
    payment_requested: Option<DateTime<Utc>>,
    payment_succeeded: Option<DateTime<Utc>>,
    saga_paid: Option<DateTime<Utc>>,
    reservation_committed: Option<DateTime<Utc>>,
    completed: Option<DateTime<Utc>>,
}

/// For each order: its own events, its payment's (the id is derived from the order), the
/// reserve and commit on its stock item (matched by the derived reservation id), and when the
/// saga's transactions that handled OrderPlaced and PaymentSucceeded began (`saga_steps` rows
/// take `now()`, the start of the runner's batch transaction).
const TIMELINES: &str = r#"
WITH q AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                         AS q(order_id, sku, reservation_id, payment_id))
SELECT q.order_id, o.*, p.*, s.*, g.*
FROM q
CROSS JOIN LATERAL (
    SELECT min(recorded_at) FILTER (WHERE event_type = 'OrderPlaced') AS placed,
           min(recorded_at) FILTER (WHERE event_type = 'OrderStockReserved') AS order_stock_reserved,
           min(recorded_at) FILTER (WHERE event_type = 'OrderPaymentRequested') AS payment_requested,
           min(recorded_at) FILTER (WHERE event_type = 'OrderCompleted') AS completed
    FROM events WHERE aggregate_type = 'order' AND aggregate_id = q.order_id) o
CROSS JOIN LATERAL (
    SELECT min(recorded_at) FILTER (WHERE event_type = 'PaymentCreated') AS payment_created,
           min(recorded_at) FILTER (WHERE event_type = 'PaymentSucceeded') AS payment_succeeded
    FROM events WHERE aggregate_type = 'payment' AND aggregate_id = q.payment_id) p
CROSS JOIN LATERAL (
    SELECT min(recorded_at) FILTER (WHERE event_type = 'StockReserved') AS stock_reserved,
           min(recorded_at) FILTER (WHERE event_type = 'ReservationCommitted') AS reservation_committed
    FROM events WHERE aggregate_type = 'stock_item' AND aggregate_id = q.sku
      AND event_type IN ('StockReserved', 'ReservationCommitted')
      AND payload -> event_type ->> 'reservation_id' = q.reservation_id) s
CROSS JOIN LATERAL (
    SELECT min(recorded_at) FILTER (WHERE event_type = 'OrderPlaced') AS saga_placed,
           min(recorded_at) FILTER (WHERE event_type = 'PaymentSucceeded') AS saga_paid
    FROM saga_steps WHERE saga_id = q.order_id::uuid) g
"#;

/// Reads the timelines of `placed`, in the same order.
async fn measure(pool: &PgPool, placed: &[Placed]) -> anyhow::Result<Vec<Timeline>> {
    let mut columns: [Vec<String>; 4] = Default::default();
    for p in placed {
        let owner = Owner::Order(OrderId(p.id));
        let sku = Sku::parse(&p.sku)?;
        columns[0].push(p.id.to_string());
        columns[1].push(sku.as_str().to_owned());
        columns[2].push(ReservationId::for_owner(owner, &sku).0.to_string());
        columns[3].push(PaymentId::for_owner(owner).0.to_string());
    }
    let rows: Vec<Timeline> = sqlx::query_as(TIMELINES)
        .bind(&columns[0])
        .bind(&columns[1])
        .bind(&columns[2])
        .bind(&columns[3])
        .fetch_all(pool)
        .await
        .context("reading the orders' events")?;
    let mut by_id: HashMap<String, Timeline> =
        rows.into_iter().map(|t| (t.order_id.clone(), t)).collect();
    placed
        .iter()
        .map(|p| {
            by_id
                .remove(&p.id.to_string())
                .with_context(|| format!("no timeline for order {}", p.id))
        })
        .collect()
}

/// How many saga batch transactions handled the steps of `placed`, and how many steps.
async fn saga_batches(pool: &PgPool, placed: &[Placed]) -> anyhow::Result<(i64, i64)> {
    let ids: Vec<Uuid> = placed.iter().map(|p| p.id).collect();
    sqlx::query_as(
        "SELECT count(DISTINCT recorded_at), count(*) FROM saga_steps WHERE saga_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(pool)
    .await
    .context("counting saga batches")
}

/// One customer count's results.
struct Point {
    customers: usize,
    run: Run,
    timelines: Vec<Timeline>,
    /// Saga batch transactions and the steps they recorded for this run's orders.
    batches: (i64, i64),
}

fn millis(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<f64> {
    Some((to? - from?).num_microseconds()? as f64 / 1000.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

fn print_summary(results: &[Point]) {
    println!("saga latency: OrderPlaced → OrderCompleted recorded_at, ms");
    println!(
        "{:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>13} {:>9} {:>7}",
        "customers",
        "orders",
        "orders/s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "not_completed",
        "post_errs",
        "gets/s"
    );
    for Point {
        customers,
        run,
        timelines,
        ..
    } in results
    {
        let done = sorted(
            timelines
                .iter()
                .filter_map(|t| millis(t.placed, t.completed)),
        );
        let secs = run.elapsed.as_secs_f64();
        println!(
            "{:>9} {:>7} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>13} {:>9} {:>7.0}",
            customers,
            run.placed.len(),
            done.len() as f64 / secs,
            percentile(&done, 0.50),
            percentile(&done, 0.95),
            percentile(&done, 0.99),
            percentile(&done, 1.0),
            run.placed.len() - done.len(),
            run.post_errors,
            run.polls as f64 / secs
        );
    }
}

/// The client's send, then the events of the flow in the order the saga records them.
const STAGES: [&str; 11] = [
    "POST sent",
    "OrderPlaced",
    "saga batch begins",
    "StockReserved",
    "OrderStockReserved",
    "PaymentCreated",
    "OrderPaymentRequested",
    "PaymentSucceeded",
    "saga batch begins",
    "ReservationCommitted",
    "OrderCompleted",
];

fn stages(p: &Placed, t: &Timeline) -> [Option<DateTime<Utc>>; 11] {
    [
        Some(p.sent),
        t.placed,
        t.saga_placed,
        t.stock_reserved,
        t.order_stock_reserved,
        t.payment_created,
        t.payment_requested,
        t.payment_succeeded,
        t.saga_paid,
        t.reservation_committed,
        t.completed,
    ]
}

/// The gaps between consecutive stages of completed orders. Means add up to the mean of the
/// whole; a gap can be negative when the webhook lands before the order records the payment
/// request.
fn print_breakdown(point: &Point) {
    let done: Vec<_> = point
        .run
        .placed
        .iter()
        .zip(&point.timelines)
        .filter(|(_, t)| t.completed.is_some())
        .map(|(p, t)| (stages(p, t), p.seen))
        .collect();
    let (batches, steps) = point.batches;
    println!(
        "\n{} customers, {} completed orders: gaps between stages, ms \
         (the saga handled their {steps} steps in {batches} batch transactions, {:.1} per batch)",
        point.customers,
        done.len(),
        steps as f64 / batches.max(1) as f64
    );
    println!(
        "{:<45} {:>8} {:>8} {:>8} {:>8}",
        "step", "mean", "p50", "p95", "p99"
    );
    let last = STAGES.len() - 1;
    let mut rows: Vec<(String, Vec<f64>)> = (1..=last)
        .map(|i| {
            let name = format!("{} → {}", STAGES[i - 1], STAGES[i]);
            (
                name,
                done.iter()
                    .filter_map(|(s, _)| millis(s[i - 1], s[i]))
                    .collect(),
            )
        })
        .collect();
    rows.push((
        format!("{} → {}", STAGES[0], STAGES[last]),
        done.iter()
            .filter_map(|(s, _)| millis(s[0], s[last]))
            .collect(),
    ));
    rows.push((
        format!("{} → seen by a poll", STAGES[last]),
        done.iter()
            .filter_map(|(s, seen)| millis(s[last], *seen))
            .collect(),
    ));
    for (name, values) in rows {
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let values = sorted(values.into_iter());
        println!(
            "{:<45} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            name,
            mean,
            percentile(&values, 0.50),
            percentile(&values, 0.95),
            percentile(&values, 0.99)
        );
    }
}
