//! The raw read rate of the event table in feed order: the ceiling for any projection rebuild
//! or subscription catch-up, which read the same rows in the same order and then do more.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// Every column a feed reader needs, in feed order (see the design's "Event store").
///
/// The `ORDER BY` names the table's columns on purpose: a bare `transaction_id` would mean the
/// output column of that name, the `::text::bigint` cast, which no index covers, and PostgreSQL
/// would sort the whole table instead of walking `events_feed_order`.
const SCAN: &str = "SELECT global_position, transaction_id::text::bigint, aggregate_type, \
    aggregate_id, sequence, event_type, payload::text, metadata::text, recorded_at \
    FROM events ORDER BY events.transaction_id, events.global_position";

type FeedRow = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    String,
    String,
    DateTime<Utc>,
);

/// Streams the whole table once, decoding every column into owned Rust values.
///
/// # Errors
/// Any database error.
pub async fn scan_once(pool: &PgPool) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut rows = sqlx::query_as::<_, FeedRow>(SCAN).fetch(pool);
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await? {
        count += 1;
        bytes += row.6.len() + row.7.len();
        std::hint::black_box(&row);
    }
    std::hint::black_box(bytes);
    Ok((count, started.elapsed()))
}

/// Scans `runs` times and prints each run and the best.
///
/// # Errors
/// Any database error.
pub async fn scan(pool: &PgPool, runs: usize) -> anyhow::Result<()> {
    let mut best: Option<f64> = None;
    for _ in 0..runs.max(1) {
        let (count, elapsed) = scan_once(pool).await?;
        let rate = count as f64 / elapsed.as_secs_f64();
        println!(
            "scan: {count} events in {:.2} s = {rate:.0} events/s",
            elapsed.as_secs_f64()
        );
        best = Some(best.map_or(rate, |b: f64| b.max(rate)));
    }
    if let Some(best) = best {
        println!("scan: best {best:.0} events/s");
    }
    Ok(())
}
