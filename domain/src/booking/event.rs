use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::aggregate::BookingStatus;
use crate::{CustomerId, Money, PaymentId, Sku};

/// Facts recorded about a Booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookingEvent {
    /// The booking exists in `PENDING_PAYMENT`.
    BookingPlaced {
        /// Who booked.
        customer_id: CustomerId,
        /// The slot.
        slot_sku: Sku,
        /// Seats.
        guests: u32,
        /// Price of one seat.
        unit_price: Money,
        /// guests × unit price.
        total: Money,
        /// When an unpaid booking expires. Absent on bookings placed before deadlines existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// The seats are held.
    BookingSeatsHeld,
    /// The slot had too few seats.
    BookingSeatsUnavailable {
        /// Why.
        reason: String,
    },
    /// A payment was created.
    BookingPaymentRequested {
        /// The payment.
        payment_id: PaymentId,
    },
    /// Paid; seats committed.
    BookingConfirmed {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The payment failed.
    BookingPaymentFailed {
        /// Why.
        reason: String,
    },
    /// Cancelled.
    BookingCancelled {
        /// Why.
        reason: String,
        /// The status it was cancelled from.
        from: BookingStatus,
    },
    /// Not paid in time.
    BookingExpired {
        /// The status it expired from.
        from: BookingStatus,
    },
    /// Money returned.
    BookingRefunded {
        /// The payment.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
    },
}

impl DomainEvent for BookingEvent {
    fn event_type(&self) -> String {
        match self {
            Self::BookingPlaced { .. } => "BookingPlaced",
            Self::BookingSeatsHeld => "BookingSeatsHeld",
            Self::BookingSeatsUnavailable { .. } => "BookingSeatsUnavailable",
            Self::BookingPaymentRequested { .. } => "BookingPaymentRequested",
            Self::BookingConfirmed { .. } => "BookingConfirmed",
            Self::BookingPaymentFailed { .. } => "BookingPaymentFailed",
            Self::BookingCancelled { .. } => "BookingCancelled",
            Self::BookingExpired { .. } => "BookingExpired",
            Self::BookingRefunded { .. } => "BookingRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
