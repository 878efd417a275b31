use super::aggregate::BookingStatus;
use crate::{DomainError, MoneyError, PaymentId, RejectionKind};

/// Why a Booking refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    /// No booking with this id was placed.
    #[error("booking not found")]
    NotFound,
    /// The id is taken.
    #[error("booking was already placed")]
    AlreadyPlaced,
    /// The total overflows.
    #[error("cannot total the booking: {0}")]
    Total(MoneyError),
    /// The status machine forbids this move.
    #[error("illegal transition from {from} to {to}")]
    IllegalTransition {
        /// Current status.
        from: BookingStatus,
        /// Requested status.
        to: BookingStatus,
    },
    /// Payment requested or confirmed before the seats were held.
    #[error("seats are not held yet")]
    SeatsNotHeld,
    /// A command named a payment other than the booking's.
    #[error("payment {0} is not this booking's payment")]
    PaymentMismatch(PaymentId),
}

impl DomainError for BookingError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "booking_not_found",
            Self::AlreadyPlaced => "booking_exists",
            Self::Total(_) => "amount_overflow",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::SeatsNotHeld => "seats_not_held",
            Self::PaymentMismatch(_) => "payment_mismatch",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound => RejectionKind::NotFound,
            Self::Total(_) => RejectionKind::Invalid,
            _ => RejectionKind::Conflict,
        }
    }
}
