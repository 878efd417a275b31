//! `reserva-storm`: a ticket drop in a box. N virtual customers over a scarce catalogue place
//! orders and bookings, cancel some (before and after paying), pay some with amounts the
//! simulated gateway declines, and re-send webhooks, for `--seconds`, against one or several
//! instances round-robin. Then it waits for the sagas to settle and audits the store: nothing
//! oversold or overbooked, every flow ended, no money kept for what did not complete, read
//! models equal to the events. Exits 1 on any violation.
//!
//! The service must run with rate limits and auth off (`RESERVA_RATE_LIMIT__ENABLED=false`,
//! no `RESERVA_AUTH__JWT_SECRET`); `ops/bench/storm.sh` starts it so.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

mod audit;
mod catalogue;
mod customer;
mod flow;
mod report;
mod sql;
mod stats;
mod verify;
mod webhook;

use catalogue::Catalogue;
use customer::{Customer, World};
use stats::Samples;

/// A storm of customers, then an audit.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of an instance; repeat or comma-separate for several (used round-robin).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    url: Vec<String>,
    /// The service's database, audited after the run.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Virtual customers.
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Seconds of load (customers then finish the flow in hand).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Products (plus about a fifth as many that the gateway declines).
    #[arg(long, default_value_t = 20)]
    products: usize,
    /// Units of each product at start.
    #[arg(long, default_value_t = 30)]
    units: u32,
    /// Time slots (plus about a fifth as many that the gateway declines).
    #[arg(long, default_value_t = 10)]
    slots: usize,
    /// Seats of each slot.
    #[arg(long, default_value_t = 40)]
    seats: u32,
    /// Restock each paying product this often (0: never).
    #[arg(long, default_value_t = 2000)]
    restock_ms: u64,
    /// Units per restock.
    #[arg(long, default_value_t = 5)]
    restock_units: u32,
    /// Mean pause of a customer between two acts (uniform in 0..2×): a shopper reading the
    /// page, not a script hammering the API.
    #[arg(long, default_value_t = 5000)]
    think_ms: u64,
    /// Shortest pause between two polls of one flow.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Most status polls per second of all customers together: with many customers each one
    /// polls less often than `--poll-ms`, so polling does not crowd out the flows it watches.
    /// Completion times are also read from the store, which does not depend on the poll.
    #[arg(long, default_value_t = 300)]
    max_polls: u64,
    /// Longest a customer waits for a flow to end.
    #[arg(long, default_value_t = 60_000)]
    wait_ms: u64,
    /// Longest wait after the load for every flow and saga to settle before the audit.
    #[arg(long, default_value_t = 120)]
    settle_secs: u64,
    /// The service's Stripe webhook secret; given, a quarter of ended flows get their payment
    /// event delivered twice more (duplicate webhooks).
    #[arg(long, env = "RESERVA_STRIPE__WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
    /// `reserva` binary for `projections verify --all`; without it the first instance's
    /// `GET /admin/projections/{name}/verify` is used.
    #[arg(long)]
    reserva_bin: Option<PathBuf>,
    /// Prefix of the SKUs.
    #[arg(long, default_value = "STORM")]
    prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let urls: Vec<String> = args
        .url
        .iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    anyhow::ensure!(
        !urls.is_empty() && args.customers > 0,
        "need a --url and customers"
    );
    anyhow::ensure!(
        args.products > 0 && args.slots > 0,
        "need products and slots"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.customers)
        .timeout(Duration::from_secs(60))
        .build()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to --database-url")?;
    let catalogue = Catalogue::new(&args.prefix.to_ascii_uppercase(), args.products, args.slots);
    catalogue::register(&client, &urls[0], &catalogue, args.units, args.seats).await?;
    let world = Arc::new(World {
        client: client.clone(),
        urls: urls.clone(),
        next: AtomicUsize::new(0),
        catalogue,
        stop: AtomicBool::new(false),
        secret: args.webhook_secret.clone().filter(|s| !s.is_empty()),
        poll: Duration::from_millis(args.poll_ms).max(Duration::from_secs_f64(
            args.customers as f64 / args.max_polls.max(1) as f64,
        )),
        wait: Duration::from_millis(args.wait_ms),
        think: Duration::from_millis(args.think_ms),
    });
    let (mut samples, elapsed) = storm(&args, &world).await?;
    report::load(&mut samples, elapsed, args.customers, urls.len());
    let audit = settle_and_audit(&args, &pool, &client, &urls[0]).await?;
    store_completion(&pool, &samples, elapsed).await?;
    report::audit(&audit);
    if audit.total() > 0 {
        for (what, detail) in audit::examples(&pool).await? {
            println!("   e.g. {what}: {detail}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the customers (and the restocker) for `--seconds`, then lets them finish.
async fn storm(args: &Args, world: &Arc<World>) -> anyhow::Result<(Samples, Duration)> {
    let started = Instant::now();
    let customers: Vec<_> = (0..args.customers)
        .map(|n| tokio::spawn(Customer::new(n as u64, Arc::clone(world)).run()))
        .collect();
    let restocker = (args.restock_ms > 0).then(|| {
        let every = Duration::from_millis(args.restock_ms);
        tokio::spawn(catalogue::restock_until(
            Arc::clone(world),
            every,
            args.restock_units,
        ))
    });
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    world.stop.store(true, Ordering::Relaxed);
    let mut samples = Samples::default();
    for customer in customers {
        samples.merge(customer.await.context("a customer task")?);
    }
    if let Some(restocker) = restocker {
        samples.merge(restocker.await.context("the restocker")?);
    }
    Ok((samples, started.elapsed()))
}

/// Waits until no flow, saga, hold or pending refund is left (or `--settle-secs`), then runs
/// the full audit including the read models' verification.
async fn settle_and_audit(
    args: &Args,
    pool: &sqlx::PgPool,
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<audit::Audit> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.settle_secs);
    loop {
        let audit = audit::store(pool).await?;
        let left = audit::unsettled(&audit);
        if left == 0 || Instant::now() >= deadline {
            println!(
                "== settled after {:.1} s ({left} still unsettled)",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut audit = audit::store(pool).await?;
    let differences = match &args.reserva_bin {
        Some(reserva) => verify::by_command(reserva, &args.database_url).await?,
        None => verify::by_http(client, url).await?,
    };
    audit.violations.extend(differences);
    Ok(audit)
}

/// Saga completion read from the store: first end event's `recorded_at` minus the POST.
async fn store_completion(
    pool: &sqlx::PgPool,
    samples: &Samples,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let ends = audit::end_times(pool).await?;
    let mut by_flow: std::collections::BTreeMap<&'static str, Vec<u64>> = Default::default();
    for (id, flow, sent) in &samples.placed {
        if let Some(end) = ends.get(id) {
            let micros = (*end - *sent).num_microseconds().unwrap_or(0).max(0);
            by_flow.entry(flow).or_default().push(micros.unsigned_abs());
        }
    }
    println!("-- saga completion, POST → first end event recorded in the store");
    report::sagas(&mut by_flow, elapsed.as_secs_f64().max(f64::EPSILON));
    Ok(())
}
