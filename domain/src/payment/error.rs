use super::aggregate::PaymentStatus;
use crate::{DomainError, Money, RejectionKind};

/// Why a Payment refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// No payment with this id was created.
    #[error("payment not found")]
    NotFound,
    /// The id is taken.
    #[error("payment was already created")]
    AlreadyCreated,
    /// The status machine forbids this move.
    #[error("illegal transition from {from} to {to}")]
    IllegalTransition {
        /// Current status.
        from: PaymentStatus,
        /// Requested status.
        to: PaymentStatus,
    },
    /// The refund is larger than what remains refundable, or in another currency.
    #[error("refund of {requested:?} exceeds the refundable {refundable:?}")]
    RefundExceedsPayment {
        /// Asked for.
        requested: Money,
        /// What is left.
        refundable: Money,
    },
}

impl DomainError for PaymentError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "payment_not_found",
            Self::AlreadyCreated => "payment_exists",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::RefundExceedsPayment { .. } => "refund_exceeds_payment",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            _ => RejectionKind::Conflict,
        }
    }
}
