//! Percentiles and the printed tables.

use chrono::{DateTime, Utc};

use crate::timeline::Timeline;
use crate::{Placed, Run};

/// One customer count's results.
pub(crate) struct Point {
    pub(crate) customers: usize,
    pub(crate) run: Run,
    pub(crate) timelines: Vec<Timeline>,
    /// Saga batch transactions and the steps they recorded for this run's orders.
    pub(crate) batches: (i64, i64),
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

pub(crate) fn print_summary(results: &[Point]) {
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
pub(crate) fn print_breakdown(point: &Point) {
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
