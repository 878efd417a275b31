//! The audit after the storm: SQL over the event store (the truth) and the read models'
//! own verification. Every count here must be zero.

use std::collections::BTreeMap;

use anyhow::Context;
use sqlx::PgPool;

use crate::sql::{
    DEAD_LETTERS, DOUBLE_COMMITS, EXAMPLES, FAILURES, KEPT_EXAMPLES, MONEY, NOT_ENDED,
    SAGAS_NOT_ENDED, STOCK,
};

/// Order and booking events that end a flow.
pub const END_EVENTS: [&str; 12] = [
    "OrderStockFailed",
    "OrderCompleted",
    "OrderPaymentFailed",
    "OrderCancelled",
    "OrderExpired",
    "OrderRefunded",
    "BookingSeatsUnavailable",
    "BookingConfirmed",
    "BookingPaymentFailed",
    "BookingCancelled",
    "BookingExpired",
    "BookingRefunded",
];

/// The invariant counts, named; all must be zero.
#[derive(Debug, Default)]
pub struct Audit {
    /// `(what, count)` in report order.
    pub violations: Vec<(String, i64)>,
    /// Information that is not an invariant (units sold, failure causes…).
    pub facts: Vec<(String, i64)>,
}

impl Audit {
    /// Sum of every violation.
    pub fn total(&self) -> i64 {
        self.violations.iter().map(|(_, n)| n).sum()
    }
}

/// Reads every count from the store.
///
/// # Errors
/// A query failed.
pub async fn store(pool: &PgPool) -> anyhow::Result<Audit> {
    let mut audit = Audit::default();
    let mut oversold = BTreeMap::from([("product", 0), ("time_slot", 0)]);
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(STOCK)
        .fetch_all(pool)
        .await
        .context("stock audit")?;
    let mut held = 0;
    for (kind, over, still_held, sold) in rows {
        let kind: &str = if kind == "time_slot" {
            "time_slot"
        } else {
            "product"
        };
        *oversold.entry(kind).or_default() += over;
        held += still_held;
        audit.facts.push((format!("{kind} units sold"), sold));
    }
    audit
        .violations
        .push(("oversold units (products)".into(), oversold["product"]));
    audit.violations.push((
        "overbooked seats (time slots)".into(),
        oversold["time_slot"],
    ));
    audit
        .violations
        .push(("units or seats still held".into(), held));
    let (twice,): (i64,) = sqlx::query_as(DOUBLE_COMMITS)
        .fetch_one(pool)
        .await
        .context("double commits")?;
    audit
        .violations
        .push(("reservations committed twice".into(), twice));
    let ends: Vec<String> = END_EVENTS.iter().map(|s| (*s).to_owned()).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(NOT_ENDED)
        .bind(&ends)
        .fetch_all(pool)
        .await
        .context("end states")?;
    for flow in ["order", "booking"] {
        let n = rows.iter().find(|(t, _)| t == flow).map_or(0, |(_, n)| *n);
        audit
            .violations
            .push((format!("{flow}s not in an end state"), n));
    }
    let (sagas,): (i64,) = sqlx::query_as(SAGAS_NOT_ENDED)
        .fetch_one(pool)
        .await
        .context("sagas")?;
    audit
        .violations
        .push(("sagas not in an end state".into(), sagas));
    let (kept, over_refunded, twice_paid, unpaid): (i64, i64, i64, i64) = sqlx::query_as(MONEY)
        .fetch_one(pool)
        .await
        .context("money audit")?;
    audit
        .violations
        .push(("money kept for a flow that did not complete".into(), kept));
    audit
        .violations
        .push(("payments refunded more than paid".into(), over_refunded));
    audit
        .violations
        .push(("payments recorded as succeeded twice".into(), twice_paid));
    audit
        .violations
        .push(("completed without a succeeded payment".into(), unpaid));
    let rows: Vec<(String, i64)> = sqlx::query_as(DEAD_LETTERS)
        .fetch_all(pool)
        .await
        .context("dead letters")?;
    let open: i64 = rows.iter().map(|(_, n)| n).sum();
    audit
        .violations
        .push(("events set aside in dead letters".into(), open));
    for (subscription, n) in rows {
        audit
            .facts
            .push((format!("dead letters open: {subscription}"), n));
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(FAILURES)
        .fetch_all(pool)
        .await
        .context("failures")?;
    for (cause, n) in rows {
        audit.facts.push((format!("payment failures: {cause}"), n));
    }
    Ok(audit)
}

/// The counts that settle by themselves (flows and sagas still running, holds, money awaiting
/// a refund, events being retried): the driver waits for these to reach zero before the final audit.
pub fn unsettled(audit: &Audit) -> i64 {
    audit
        .violations
        .iter()
        .filter(|(what, _)| {
            ["end state", "still held", "money kept", "dead letters"]
                .iter()
                .any(|w| what.contains(w))
        })
        .map(|(_, n)| n)
        .sum()
}

/// When each placed flow first reached an end event (`recorded_at`), by aggregate id.
///
/// # Errors
/// The query failed.
pub async fn end_times(
    pool: &PgPool,
) -> anyhow::Result<BTreeMap<String, chrono::DateTime<chrono::Utc>>> {
    let ends: Vec<String> = END_EVENTS.iter().map(|s| (*s).to_owned()).collect();
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT aggregate_id, min(recorded_at) FROM events \
         WHERE aggregate_type IN ('order', 'booking') AND event_type = ANY($1) GROUP BY 1",
    )
    .bind(&ends)
    .fetch_all(pool)
    .await
    .context("end times")?;
    Ok(rows.into_iter().collect())
}

/// Up to five examples of each unsettled kind, as `(what, detail)`.
///
/// # Errors
/// The query failed.
pub async fn examples(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    let ends: Vec<String> = END_EVENTS.iter().map(|s| (*s).to_owned()).collect();
    let mut examples: Vec<(String, String)> = sqlx::query_as(EXAMPLES)
        .bind(&ends)
        .fetch_all(pool)
        .await
        .context("examples")?;
    let kept: Vec<(String, String)> = sqlx::query_as(KEPT_EXAMPLES)
        .fetch_all(pool)
        .await
        .context("money kept examples")?;
    examples.extend(kept);
    Ok(examples)
}
