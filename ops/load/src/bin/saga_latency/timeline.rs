//! Reading an order's timeline from the event store, after the run.

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain::{OrderId, Owner, PaymentId, ReservationId, Sku};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

use crate::Placed;

/// An order's events as recorded; `None` where that event is missing.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Timeline {
    pub(crate) order_id: String,
    pub(crate) placed: Option<DateTime<Utc>>,
    pub(crate) saga_placed: Option<DateTime<Utc>>,
    pub(crate) stock_reserved: Option<DateTime<Utc>>,
    pub(crate) order_stock_reserved: Option<DateTime<Utc>>,
    pub(crate) payment_created: Option<DateTime<Utc>>,
    pub(crate) payment_requested: Option<DateTime<Utc>>,
    pub(crate) payment_succeeded: Option<DateTime<Utc>>,
    pub(crate) saga_paid: Option<DateTime<Utc>>,
    pub(crate) reservation_committed: Option<DateTime<Utc>>,
    pub(crate) completed: Option<DateTime<Utc>>,
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
pub(crate) async fn measure(pool: &PgPool, placed: &[Placed]) -> anyhow::Result<Vec<Timeline>> {
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
pub(crate) async fn saga_batches(pool: &PgPool, placed: &[Placed]) -> anyhow::Result<(i64, i64)> {
    let ids: Vec<Uuid> = placed.iter().map(|p| p.id).collect();
    sqlx::query_as(
        "SELECT count(DISTINCT recorded_at), count(*) FROM saga_steps WHERE saga_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(pool)
    .await
    .context("counting saga batches")
}
