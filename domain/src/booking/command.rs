use chrono::{DateTime, Utc};

use crate::{CustomerId, Money, PaymentId, Quantity, Sku};

/// What can be asked of a Booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingCommand {
    /// Records a new booking in `PENDING_PAYMENT`.
    Place {
        /// Who books.
        customer_id: CustomerId,
        /// The time slot's SKU.
        slot_sku: Sku,
        /// Seats wanted.
        guests: Quantity,
        /// Price of one seat, copied from the slot.
        unit_price: Money,
        /// When an unpaid booking expires and its seats are released.
        expires_at: DateTime<Utc>,
    },
    /// The seats are held on the slot.
    MarkSeatsHeld,
    /// The slot had too few seats: `PENDING_PAYMENT → SEATS_UNAVAILABLE`.
    RejectSeats {
        /// Why.
        reason: String,
    },
    /// A payment was created for the booking.
    RequestPayment {
        /// The payment.
        payment_id: PaymentId,
    },
    /// The payment succeeded: `PENDING_PAYMENT → CONFIRMED`.
    Confirm {
        /// Must be the payment that was requested.
        payment_id: PaymentId,
    },
    /// The payment failed.
    FailPayment {
        /// Why.
        reason: String,
    },
    /// The customer (or an admin) cancelled.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Not paid in time.
    Expire,
    /// Money taken for this booking was returned.
    MarkRefunded {
        /// The payment refunded.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
    },
}

impl BookingCommand {
    /// The variant's name (`"Place"`): a bounded label for metrics and logs that
    /// does not carry the command's data.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Place { .. } => "Place",
            Self::MarkSeatsHeld => "MarkSeatsHeld",
            Self::RejectSeats { .. } => "RejectSeats",
            Self::RequestPayment { .. } => "RequestPayment",
            Self::Confirm { .. } => "Confirm",
            Self::FailPayment { .. } => "FailPayment",
            Self::Cancel { .. } => "Cancel",
            Self::Expire => "Expire",
            Self::MarkRefunded { .. } => "MarkRefunded",
        }
    }
}
