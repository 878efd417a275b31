use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::aggregate::OrderStatus;
use super::command::OrderItem;
use crate::{CustomerId, Money, PaymentId, Sku};

/// Who cancelled an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canceller {
    /// The customer who placed it.
    Customer,
    /// An operator.
    Admin,
    /// The service itself (a saga's compensation).
    System,
}

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
    ///
    /// Version 2.0 added `by`; events stored as 1.0 were all the customer's own (admins could
    /// not cancel then) and are read as such ([`crate::upcast`]).
    OrderCancelled {
        /// Why.
        reason: String,
        /// The status it was cancelled from (decides refund vs cancel of the intent).
        from: OrderStatus,
        /// Who cancelled.
        by: Canceller,
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
        match self {
            Self::OrderCancelled { .. } => "2.0",
            _ => "1.0",
        }
        .to_owned()
    }
}
