//! The audit's SQL over `events`, `saga_instances` and `dead_letters` (payloads are
//! cqrs-es's externally tagged JSON: `{"StockReserved": {...}}`).

/// Per stock item: units supplied (registered, restocked, adjusted), sold (committed minus
/// returned) and still held (reserved minus released minus committed), by kind.
pub const STOCK: &str = r#"
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
pub const DOUBLE_COMMITS: &str = r#"
SELECT count(*) FROM (
  SELECT aggregate_id, payload->'ReservationCommitted'->>'reservation_id'
  FROM events WHERE aggregate_type = 'stock_item' AND event_type = 'ReservationCommitted'
  GROUP BY 1, 2 HAVING count(*) > 1) twice"#;

/// Orders and bookings whose last event does not end their flow.
pub const NOT_ENDED: &str = r#"
SELECT aggregate_type, count(*) FROM (
  SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, event_type
  FROM events WHERE aggregate_type IN ('order', 'booking')
  ORDER BY aggregate_type, aggregate_id, sequence DESC) last
WHERE event_type <> ALL($1) GROUP BY 1"#;

/// Sagas not in an end state.
pub const SAGAS_NOT_ENDED: &str = "SELECT count(*) FROM saga_instances WHERE state NOT IN \
    ('completed', 'stock_failed', 'payment_failed', 'cancelled', 'expired', 'refunded')";

/// Events a subscription (projection or saga) set aside and has not applied, by subscription:
/// a parked saga step is a flow stuck half-way.
pub const DEAD_LETTERS: &str = "SELECT subscription, count(*) FROM dead_letters \
    WHERE status IN ('retrying', 'parked', 'waiting') GROUP BY 1 ORDER BY 1";

/// Per payment its owner, amount, successes and refunds (`p`), and each order's and
/// booking's last event (`o`): the start both money queries share.
macro_rules! payments_and_owners {
    () => {
        r#"
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
  ORDER BY aggregate_type, aggregate_id, sequence DESC)"#
    };
}

/// Per payment: its owner, amount, successes and refunds; joined with the owner's last event.
pub const MONEY: &str = concat!(
    payments_and_owners!(),
    r#",
paid AS (
  SELECT DISTINCT owner_kind, owner_id FROM p WHERE succeeded > 0)
SELECT
  (SELECT count(*) FROM p LEFT JOIN o ON o.aggregate_type = p.owner_kind AND o.aggregate_id = p.owner_id
    WHERE p.succeeded > 0 AND p.refunded < p.amount
      AND coalesce(o.event_type, '') NOT IN ('OrderCompleted', 'BookingConfirmed')),
  (SELECT count(*) FROM p WHERE p.refunded > p.amount),
  (SELECT count(*) FROM p WHERE p.succeeded > 1),
  (SELECT count(*) FROM o LEFT JOIN paid ON paid.owner_kind = o.aggregate_type AND paid.owner_id = o.aggregate_id
    WHERE o.event_type IN ('OrderCompleted', 'BookingConfirmed') AND paid.owner_id IS NULL)"#
);

/// Why payments failed, in three buckets (declined by the provider, unavailable, breaker open).
pub const FAILURES: &str = r#"
SELECT CASE
    WHEN reason LIKE '%circuit is open%' THEN 'breaker open'
    WHEN reason LIKE '%unavailable%' THEN 'provider unavailable'
    ELSE 'declined' END, count(*)
FROM (SELECT coalesce(payload->'OrderPaymentFailed'->>'reason', payload->'BookingPaymentFailed'->>'reason') AS reason
      FROM events WHERE event_type IN ('OrderPaymentFailed', 'BookingPaymentFailed')) f
GROUP BY 1 ORDER BY 1"#;

/// A few concrete cases behind the violations, to start an investigation from.
pub const EXAMPLES: &str = r#"
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
pub const KEPT_EXAMPLES: &str = concat!(
    payments_and_owners!(),
    r#"
SELECT 'money kept', 'payment ' || p.aggregate_id || ' of ' || p.owner_kind || ' ' || p.owner_id
  || ' (last ' || coalesce(o.event_type, '?') || ', refunded ' || p.refunded || ' of ' || p.amount || ')'
FROM p LEFT JOIN o ON o.aggregate_type = p.owner_kind AND o.aggregate_id = p.owner_id
WHERE p.succeeded > 0 AND p.refunded < p.amount
  AND coalesce(o.event_type, '') NOT IN ('OrderCompleted', 'BookingConfirmed')
LIMIT 5"#
);
