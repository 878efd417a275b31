use super::aggregate::OrderStatus;
use crate::{DomainError, MoneyError, PaymentId, RejectionKind, Sku};

/// Why an Order refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// No order with this id was placed.
    #[error("order not found")]
    NotFound,
    /// The id is taken.
    #[error("order was already placed")]
    AlreadyPlaced,
    /// An order needs at least one item.
    #[error("an order needs at least one item")]
    NoItems,
    /// Each SKU may appear once; quantities are per line.
    #[error("sku {0} appears more than once")]
    DuplicateSku(Sku),
    /// Items priced in different currencies, or a total that overflows.
    #[error("cannot total the order: {0}")]
    Total(MoneyError),
    /// The status machine forbids this move.
    #[error("illegal transition from {from} to {to}")]
    IllegalTransition {
        /// Current status.
        from: OrderStatus,
        /// Requested status.
        to: OrderStatus,
    },
    /// A command named a payment other than the one the order requested.
    #[error("payment {0} is not this order's payment")]
    PaymentMismatch(PaymentId),
}

impl DomainError for OrderError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "order_not_found",
            Self::AlreadyPlaced => "order_exists",
            Self::NoItems => "no_items",
            Self::DuplicateSku(_) => "duplicate_sku",
            Self::Total(MoneyError::CurrencyMismatch(..)) => "mixed_currencies",
            Self::Total(_) => "amount_overflow",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::PaymentMismatch(_) => "payment_mismatch",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            Self::NoItems | Self::DuplicateSku(_) | Self::Total(_) => RejectionKind::Invalid,
            _ => RejectionKind::Conflict,
        }
    }
}
