//! The audit after the storm: SQL over the event store (the truth) and the read models'
//! own verification. Every count here must be zero.

use std::collections::BTreeMap;

use anyhow::Context;
use sqlx::PgPool;

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

/// Per stock item: units supplied (registered, restocked, adjusted), sold (committed minus
/// returned) and still held (reserved minus released minus committed), by kind.
const STOCK: &str = r#"
WITH s AS (
  SELECT aggregate_id,
    max(payload->'StockItemRegistered'->'kind'->>'kind') AS kind,
    sum(CASE event_type
      WHEN 'StockItemRegistered' THEN (payload->'StockItemRegistered'->>'on_hand')::bigint
      WHEN 'StockRestocked' THEN (payload->'StockRestocked'->>'quantity')::bigint
      WHEN 'StockAdjusted' THEN (payload->'StockAdjusted'->>'delta')::bigint
      ELSE 0 END) AS supplied,
    sum(CASE event_type
      WHEN 'ReservationCommitted' THEN (payload->'ReservationCommitted'->>'quantity')::bigint
      WHEN 'ReservationReturned' THEN -(payload->'ReservationReturned'->>'quantity')::bigint
      ELSE 0 END) AS sold,
    sum(CASE event_type
      WHEN 'StockReserved' THEN (payload->'StockReserved'->>'quantity')::bigint
      WHEN 'ReservationReleased' THEN -(payload->'ReservationReleased'->>'quantity')::bigint
      WHEN 'ReservationCommitted' THEN -(payload->'ReservationCommitted'->>'quantity')::bigint
      ELSE 0 END) AS held
  FROM events WHERE aggregate_type = 'stock_item' GROUP BY aggregate_id)
SELECT coalesce(kind, '?'),
  coalesce(sum(greatest(sold - supplied, 0)), 0)::bigint,
  coalesce(sum(greatest(held, 0)), 0)::bigint,
  coalesce(sum(sold), 0)::bigint
FROM s GROUP BY 1"#;

/// Reservations committed more than once (a doubled saga step).
const DOUBLE_COMMITS: &str = r#"
SELECT count(*) FROM (
  SELECT aggregate_id, payload->'ReservationCommitted'->>'reservation_id'
  FROM events WHERE aggregate_type = 'stock_item' AND event_type = 'ReservationCommitted'
  GROUP BY 1, 2 HAVING count(*) > 1) twice"#;

/// Orders and bookings whose last event does not end their flow.
const NOT_ENDED: &str = r#"
SELECT aggregate_type, count(*) FROM (
  SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, event_type
  FROM events WHERE aggregate_type IN ('order', 'booking')
  ORDER BY aggregate_type, aggregate_id, sequence DESC) last
WHERE event_type <> ALL($1) GROUP BY 1"#;

/// Sagas not in an end state.
const SAGAS_NOT_ENDED: &str = "SELECT count(*) FROM saga_instances WHERE state NOT IN \
    ('completed', 'stock_failed', 'payment_failed', 'cancelled', 'expired', 'refunded')";

/// Events a subscription (projection or saga) set aside and has not applied, by subscription:
/// a parked saga step is a flow stuck half-way.
const DEAD_LETTERS: &str = "SELECT subscription, count(*) FROM dead_letters \
    WHERE status IN ('retrying', 'parked', 'waiting') GROUP BY 1 ORDER BY 1";

/// Per payment: its owner, amount, successes and refunds; joined with the owner's last event.
const MONEY: &str = r#"
WITH p AS (
  SELECT aggregate_id,
    max(payload->'PaymentCreated'->'owner'->>'kind') AS owner_kind,
    max(payload->'PaymentCreated'->'owner'->>'id') AS owner_id,
    max((payload->'PaymentCreated'->'amount'->>'amount')::bigint) AS amount,
    count(*) FILTER (WHERE event_type = 'PaymentSucceeded') AS succeeded,
    coalesce(max((payload->'PaymentRefunded'->'refunded_total'->>'amount')::bigint), 0) AS refunded
  FROM events WHERE aggregate_type = 'payment' GROUP BY aggregate_id),
o AS (
  SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id, event_type
  FROM events WHERE aggregate_type IN ('order', 'booking')
  ORDER BY aggregate_type, aggregate_id, sequence DESC),
paid AS (
  SELECT DISTINCT owner_kind, owner_id FROM p WHERE succeeded > 0)
SELECT
  (SELECT count(*) FROM p LEFT JOIN o ON o.aggregate_type = p.owner_kind AND o.aggregate_id = p.owner_id
    WHERE p.succeeded > 0 AND p.refunded < p.amount
      AND coalesce(o.event_type, '') NOT IN ('OrderCompleted', 'BookingConfirmed')),
  (SELECT count(*) FROM p WHERE p.refunded > p.amount),
  (SELECT count(*) FROM p WHERE p.succeeded > 1),
  (SELECT count(*) FROM o LEFT JOIN paid ON paid.owner_kind = o.aggregate_type AND paid.owner_id = o.aggregate_id
    WHERE o.event_type IN ('OrderCompleted', 'BookingConfirmed') AND paid.owner_id IS NULL)"#;

/// Why payments failed, in three buckets (declined by the provider, unavailable, breaker open).
const FAILURES: &str = r#"
SELECT CASE
    WHEN reason LIKE '%circuit is open%' THEN 'breaker open'
    WHEN reason LIKE '%unavailable%' THEN 'provider unavailable'
    ELSE 'declined' END, count(*)
FROM (SELECT coalesce(payload->'OrderPaymentFailed'->>'reason', payload->'BookingPaymentFailed'->>'reason') AS reason
      FROM events WHERE event_type IN ('OrderPaymentFailed', 'BookingPaymentFailed')) f
GROUP BY 1 ORDER BY 1"#;

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

/// A few concrete cases behind the violations, to start an investigation from.
const EXAMPLES: &str = r#"
(SELECT 'not ended' AS what, aggregate_type || ' ' || aggregate_id || ' last ' || event_type AS detail
 FROM (SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id, event_type
       FROM events WHERE aggregate_type IN ('order', 'booking')
       ORDER BY aggregate_type, aggregate_id, sequence DESC) last
 WHERE event_type <> ALL($1) LIMIT 5)
UNION ALL
(SELECT 'saga not ended', saga_type || ' ' || id || ' in ' || state FROM saga_instances
 WHERE state NOT IN ('completed', 'stock_failed', 'payment_failed', 'cancelled', 'expired', 'refunded') LIMIT 5)
UNION ALL
(SELECT 'dead letter', subscription || ' ' || aggregate_type || ' ' || aggregate_id || ' ' || event_type
   || ' (' || status || ', ' || attempts || ' attempts): ' || coalesce(error, '')
 FROM dead_letters WHERE status IN ('retrying', 'parked', 'waiting') ORDER BY id LIMIT 5)"#;

/// Payments that succeeded, are not fully refunded, and whose flow did not complete.
const KEPT_EXAMPLES: &str = r#"
WITH p AS (
  SELECT aggregate_id,
    max(payload->'PaymentCreated'->'owner'->>'kind') AS owner_kind,
    max(payload->'PaymentCreated'->'owner'->>'id') AS owner_id,
    max((payload->'PaymentCreated'->'amount'->>'amount')::bigint) AS amount,
    count(*) FILTER (WHERE event_type = 'PaymentSucceeded') AS succeeded,
    coalesce(max((payload->'PaymentRefunded'->'refunded_total'->>'amount')::bigint), 0) AS refunded
  FROM events WHERE aggregate_type = 'payment' GROUP BY aggregate_id),
o AS (
  SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id, event_type
  FROM events WHERE aggregate_type IN ('order', 'booking')
  ORDER BY aggregate_type, aggregate_id, sequence DESC)
SELECT 'money kept', 'payment ' || p.aggregate_id || ' of ' || p.owner_kind || ' ' || p.owner_id
  || ' (last ' || coalesce(o.event_type, '?') || ', refunded ' || p.refunded || ' of ' || p.amount || ')'
FROM p LEFT JOIN o ON o.aggregate_type = p.owner_kind AND o.aggregate_id = p.owner_id
WHERE p.succeeded > 0 AND p.refunded < p.amount
  AND coalesce(o.event_type, '') NOT IN ('OrderCompleted', 'BookingConfirmed')
LIMIT 5"#;

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
