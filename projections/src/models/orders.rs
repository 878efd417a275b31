//! Orders by id, by customer and by status.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::Money;
use domain::order::{Order, OrderEvent, OrderItem, OrderStatus};
use domain::payment::Payment;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::read_model::{Applied, ReadModel};

/// One row of `rm_orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    /// The order id.
    pub id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Upper-case status name.
    pub status: String,
    /// Lines with the prices frozen when it was placed.
    pub items: Vec<OrderItem>,
    /// Sum of the lines.
    pub total: Money,
    /// Its payment, once requested.
    pub payment_id: Option<Uuid>,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<String>,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it expires unless paid (`None` for ones placed before deadlines existed).
    pub expires_at: Option<DateTime<Utc>>,
    /// When its last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// Last event folded in.
    pub position: i64,
}

/// The `orders` read model.
pub struct Orders;

impl ReadModel for Orders {
    const NAME: &'static str = "orders";
    /// Orders are read joined with their payments (see `joined`).
    const FOLLOWS: &'static [&'static str] = &[Payment::TYPE];
    const TABLE: &'static str = "rm_orders";
    const KEY_TYPE: &'static str = "uuid";
    type Aggregate = Order;
    type Row = OrderRow;

    fn apply(
        row: Option<OrderRow>,
        id: &str,
        event: OrderEvent,
        applied: Applied,
    ) -> Result<Option<OrderRow>, String> {
        let mut row = match (row, event) {
            (
                _,
                OrderEvent::OrderPlaced {
                    customer_id,
                    items,
                    total,
                    expires_at,
                },
            ) => OrderRow {
                id: id.parse().map_err(|e| format!("order id {id}: {e}"))?,
                customer_id: customer_id.0,
                status: OrderStatus::Started.as_str().to_owned(),
                items,
                total,
                payment_id: None,
                failure_reason: None,
                placed_at: applied.recorded_at,
                expires_at,
                updated_at: applied.recorded_at,
                position: 0,
            },
            (None, _) => return Err(super::missing(id)),
            (Some(mut row), event) => {
                let status = match event {
                    OrderEvent::OrderPlaced { .. } => OrderStatus::Started,
                    OrderEvent::OrderStockReserved => OrderStatus::StockReserved,
                    OrderEvent::OrderStockFailed { sku, reason } => {
                        row.failure_reason = Some(format!("{sku}: {reason}"));
                        OrderStatus::StockFailed
                    }
                    OrderEvent::OrderPaymentRequested { payment_id } => {
                        row.payment_id = Some(payment_id.0);
                        OrderStatus::PaymentPending
                    }
                    OrderEvent::OrderCompleted { payment_id } => {
                        row.payment_id = Some(payment_id.0);
                        OrderStatus::Completed
                    }
                    OrderEvent::OrderPaymentFailed { reason } => {
                        row.failure_reason = Some(reason);
                        OrderStatus::PaymentFailed
                    }
                    OrderEvent::OrderCancelled { reason, .. } => {
                        row.failure_reason = Some(reason);
                        OrderStatus::Cancelled
                    }
                    OrderEvent::OrderExpired { .. } => OrderStatus::Expired,
                    OrderEvent::OrderRefunded { .. } => OrderStatus::Refunded,
                };
                row.status = status.as_str().to_owned();
                row
            }
        };
        row.updated_at = applied.recorded_at;
        row.position = applied.position;
        Ok(Some(row))
    }
}
