use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::aggregate::OrderStatus;
use super::command::OrderItem;
use crate::{CustomerId, Money, PaymentId, Sku};

/// Facts recorded about an Order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The order exists in `STARTED`.
    OrderPlaced {
        /// Who ordered.
        customer_id: CustomerId,
        /// What.
        items: Vec<OrderItem>,
        /// Sum of quantity × unit price.
        total: Money,
        /// When an unpaid order expires. Absent on orders placed before deadlines existed,
        /// which therefore never expire on their own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Every item is held.
    OrderStockReserved,
    /// An item could not be held.
    OrderStockFailed {
        /// The SKU.
        sku: Sku,
        /// Why.
        reason: String,
    },
    /// A payment was created for the order.
    OrderPaymentRequested {
        /// The payment.
        payment_id: PaymentId,
    },
    /// Paid; stock is committed.
    OrderCompleted {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The payment failed.
    OrderPaymentFailed {
        /// Why.
        reason: String,
    },
    /// Cancelled by the customer or an admin.
    OrderCancelled {
        /// Why.
        reason: String,
        /// The status it was cancelled from (decides refund vs cancel of the intent).
        from: OrderStatus,
    },
    /// The deadline passed before payment.
    OrderExpired {
        /// The status it expired from.
        from: OrderStatus,
    },
    /// Money was returned.
    OrderRefunded {
        /// The payment refunded.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::OrderStockReserved => "OrderStockReserved",
            Self::OrderStockFailed { .. } => "OrderStockFailed",
            Self::OrderPaymentRequested { .. } => "OrderPaymentRequested",
            Self::OrderCompleted { .. } => "OrderCompleted",
            Self::OrderPaymentFailed { .. } => "OrderPaymentFailed",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderExpired { .. } => "OrderExpired",
            Self::OrderRefunded { .. } => "OrderRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
