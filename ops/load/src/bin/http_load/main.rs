//! `reserva-http-load`: closed-loop HTTP load over a fixed set of ids, one run per client count.
//!
//! Written so that `ops/bench/compare.sh` can put Reserva's reads and a peer service's commands
//! and reads (cqrs-demo) under the same client as `reserva-load` (reqwest on tokio, one shared
//! connection pool, the same percentiles), rather than under a separate tool such as wrk whose
//! numbers would not be comparable with the restock runs. A benchmark, not a test: it asserts
//! nothing about speed.

use anyhow::{Context, bail, ensure};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// GETs of a URL template, or POSTs of a body template, over a fixed set of ids.
#[derive(Debug, Parser)]
struct Args {
    /// URL with an `{id}` placeholder, e.g. `http://127.0.0.1:8080/api/v1/stock-items/{id}`.
    #[arg(long)]
    url: String,
    /// JSON body to POST to the URL (`{id}` replaced); without it the requests are GETs.
    #[arg(long)]
    body: Option<String>,
    /// JSON body POSTed once per id before the runs (e.g. cqrs-demo's `OpenAccount`); an
    /// answer other than 2xx stops the tool, since the runs would then measure errors.
    #[arg(long)]
    setup_body: Option<String>,
    /// Number of ids, `{id-prefix}{i:06}` for i in 0..ids (with the default prefix these are
    /// the SKUs that `reserva-load` registers).
    #[arg(long, default_value_t = 4000)]
    ids: usize,
    /// Prefix of the generated ids.
    #[arg(long, default_value = "LOAD-")]
    id_prefix: String,
    /// File with one id per line, used instead of the generated ids.
    #[arg(long)]
    ids_file: Option<PathBuf>,
    /// Client counts to measure, one closed-loop run each.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// First word of each printed line (no spaces), naming what was measured.
    #[arg(long, default_value = "http")]
    label: String,
}

/// Prints one line per client count, in this fixed format (parsed by `ops/bench/compare.sh`):
/// `LABEL CLIENTS clients REQS req/s p50 MS ms p99 MS ms ERRORS errors`.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ids: Vec<String> = match &args.ids_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => (0..args.ids)
            .map(|i| format!("{}{i:06}", args.id_prefix))
            .collect(),
    };
    ensure!(!ids.is_empty(), "no ids");
    ensure!(
        args.clients.iter().all(|&c| c > 0 && c <= ids.len()),
        "every client count must be between 1 and the number of ids"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let ids = Arc::new(ids);
    if let Some(setup) = &args.setup_body {
        setup_all(&client, &args.url, setup, &ids).await?;
    }
    for &clients in &args.clients {
        let (latencies, errors, elapsed) = run(&client, &args, &ids, clients).await?;
        println!(
            "{} {clients} clients {:.1} req/s p50 {:.2} ms p99 {:.2} ms {errors} errors",
            args.label,
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
    Ok(())
}

/// One request; `Ok(true)` on a 2xx whose body was read in full (the body is part of a read's
/// cost, and an unread body would keep its connection out of the pool).
async fn send(client: &reqwest::Client, url: &str, body: Option<String>) -> anyhow::Result<bool> {
    let request = match body {
        Some(body) => client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body),
        None => client.get(url),
    };
    let response = request.send().await?;
    let ok = response.status().is_success();
    response.bytes().await?;
    Ok(ok)
}

/// POSTs `body` once per id, 16 at a time.
async fn setup_all(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    ids: &Arc<Vec<String>>,
) -> anyhow::Result<()> {
    let workers = 16.min(ids.len());
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (client, ids) = (client.clone(), ids.clone());
            let (url, body) = (url.to_owned(), body.to_owned());
            tokio::spawn(async move {
                for id in ids.iter().skip(w).step_by(workers) {
                    if !send(
                        &client,
                        &url.replace("{id}", id),
                        Some(body.replace("{id}", id)),
                    )
                    .await?
                    {
                        bail!("setup of {id} was refused");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("setup task")??;
    }
    Ok(())
}

/// `clients` tasks for `args.seconds`. POSTs walk the client's own ids (`c, c+clients, …`), so
/// no two clients write one aggregate (which optimistic concurrency would turn into errors);
/// GETs pick ids at random from all of them.
async fn run(
    client: &reqwest::Client,
    args: &Args,
    ids: &Arc<Vec<String>>,
    clients: usize,
) -> anyhow::Result<(Vec<Duration>, usize, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (client, ids, stop) = (client.clone(), ids.clone(), stop.clone());
            let (url, body) = (args.url.clone(), args.body.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::from_rng(&mut rand::rng());
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                let mut own = (c..ids.len()).step_by(clients).cycle();
                while !stop.load(Ordering::Relaxed) {
                    let id = match body {
                        Some(_) => &ids[own.next().unwrap_or(c)],
                        None => &ids[rng.random_range(0..ids.len())],
                    };
                    let sent = Instant::now();
                    match send(
                        &client,
                        &url.replace("{id}", id),
                        body.as_ref().map(|b| b.replace("{id}", id)),
                    )
                    .await
                    {
                        Ok(true) => latencies.push(sent.elapsed()),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for handle in handles {
        let (l, e) = handle.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok((latencies, errors, elapsed))
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
