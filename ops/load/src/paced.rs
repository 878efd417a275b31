//! Open-loop load: restocks issued on a fixed schedule, whatever the server's answers do.
//!
//! A closed loop slows down with the server and so hides queueing; a steady offered rate shows
//! it. Latency is measured from when each request was *due*, so if the driver falls behind
//! (all in-flight slots busy, or the timer late) the wait counts against the server rather
//! than disappearing (coordinated omission).

use reqwest::header::CONTENT_TYPE;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Args, percentile, sku};

/// Outcome of one scheduled request: latency from its due time, and whether it was accepted.
type Outcome = (Duration, bool);

/// Offers `rate` restocks per second for `args.seconds`, round-robin over the SKUs, and prints
/// one line of results.
///
/// # Errors
/// An invalid rate or no SKUs; request failures are counted, not returned.
pub async fn run(client: &reqwest::Client, args: &Args, rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0 && rate <= 1e6,
        "--rate must be between 0 and 1000000"
    );
    anyhow::ensure!(args.skus > 0, "--skus must be positive");
    let urls: Vec<Arc<str>> = (0..args.skus)
        .map(|i| format!("{}/api/v1/stock-items/{}/restock", args.url, sku(args, i)).into())
        .collect();
    let total = (rate * args.seconds as f64).round() as usize;
    let slots = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let mut requests: JoinSet<Outcome> = JoinSet::new();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(total);
    // Burst: after a stall the missed ticks fire at once, keeping the offered rate, and each
    // still reports the instant it was due.
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    for i in 0..total {
        let due = ticker.tick().await;
        let permit = slots.clone().acquire_owned().await?;
        let request = client
            .post(&*urls[i % urls.len()])
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"quantity":1}"#);
        requests.spawn(async move {
            let accepted = match request.send().await {
                // The body is read so the connection goes back to the pool.
                Ok(response) => response.status().as_u16() == 202 && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            drop(permit);
            (due.elapsed(), accepted)
        });
        while let Some(done) = requests.try_join_next() {
            outcomes.push(done?);
        }
    }
    let offered_for = started.elapsed();
    while let Some(done) = requests.join_next().await {
        outcomes.push(done?);
    }
    let elapsed = started.elapsed();
    report(rate, total, offered_for, elapsed, outcomes);
    Ok(())
}

fn report(
    rate: f64,
    sent: usize,
    offered_for: Duration,
    elapsed: Duration,
    outcomes: Vec<Outcome>,
) {
    let errors = outcomes.iter().filter(|(_, ok)| !ok).count();
    let mut latencies: Vec<Duration> = outcomes.into_iter().map(|(d, _)| d).collect();
    latencies.sort();
    println!(
        "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "target/s", "sent/s", "ok/s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors"
    );
    println!(
        "{:>9.0} {:>9.1} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
        rate,
        sent as f64 / offered_for.as_secs_f64(),
        (sent - errors) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        errors
    );
}
