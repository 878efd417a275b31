use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CustomerId, Money, PaymentId, Quantity, Sku};

/// One line of an order: a SKU, how many, and the unit price at the time of ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// What.
    pub sku: Sku,
    /// How many.
    pub quantity: Quantity,
    /// Price of one unit, copied from the StockItem when the order was placed.
    pub unit_price: Money,
}

/// What can be asked of an Order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// Records a new order in `STARTED`.
    Place {
        /// Who orders.
        customer_id: CustomerId,
        /// What.
        items: Vec<OrderItem>,
        /// When an unpaid order expires and its stock is released.
        expires_at: DateTime<Utc>,
    },
    /// Every item is held: `STARTED → STOCK_RESERVED`.
    ConfirmStockReserved,
    /// An item could not be held: `STARTED → STOCK_FAILED`.
    FailStock {
        /// The SKU that could not be held.
        sku: Sku,
        /// Why.
        reason: String,
    },
    /// A payment was created: `STOCK_RESERVED → PAYMENT_PENDING`.
    RequestPayment {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The payment succeeded: `PAYMENT_PENDING → COMPLETED`.
    Complete {
        /// Must be the payment that was requested.
        payment_id: PaymentId,
    },
    /// The payment failed: `PAYMENT_PENDING → PAYMENT_FAILED`.
    FailPayment {
        /// Why.
        reason: String,
    },
    /// The customer (or an admin) cancelled.
    Cancel {
        /// Why.
        reason: String,
        /// Who.
        by: super::Canceller,
    },
    /// The reservation deadline passed before payment.
    Expire,
    /// Money taken for this order was returned.
    MarkRefunded {
        /// The payment refunded.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
    },
}

impl OrderCommand {
    /// The variant's name (`"Place"`): a bounded label for metrics and logs that
    /// does not carry the command's data.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Place { .. } => "Place",
            Self::ConfirmStockReserved => "ConfirmStockReserved",
            Self::FailStock { .. } => "FailStock",
            Self::RequestPayment { .. } => "RequestPayment",
            Self::Complete { .. } => "Complete",
            Self::FailPayment { .. } => "FailPayment",
            Self::Cancel { .. } => "Cancel",
            Self::Expire => "Expire",
            Self::MarkRefunded { .. } => "MarkRefunded",
        }
    }
}
