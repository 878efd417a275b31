//! The order or booking behind a purchase, and the status moves its saga asks of it.

use domain::booking::{Booking, BookingCommand};
use domain::order::{Canceller, Order, OrderCommand, OrderItem};
use domain::{CustomerId, PaymentId, Sku};

use crate::record::{Recorder, Tracked};

pub enum Buyer {
    Order(Tracked<Order>),
    Booking(Tracked<Booking>),
}

/// A status move asked of the order or booking, spelled once for both.
pub enum Move {
    Held,
    RequestPayment(PaymentId),
    Complete(PaymentId),
    FailPayment,
    Cancel,
    Expire,
    /// This SKU could not be held, for this reason.
    FailStock(Sku, String),
}

impl Buyer {
    /// Places the order, or the booking of the first item's slot (a booking has one line).
    pub fn place(
        &mut self,
        customer_id: CustomerId,
        mut items: Vec<OrderItem>,
        meta: &str,
        out: &mut Recorder,
    ) -> anyhow::Result<()> {
        // Filled history is replayed, not run by sagas, so the deadline only has to be plausible.
        let expires_at = chrono::Utc::now() + chrono::Duration::minutes(15);
        match self {
            Self::Order(order) => {
                let command = OrderCommand::Place {
                    customer_id,
                    items,
                    expires_at,
                };
                order.execute(command, meta, out)?;
            }
            Self::Booking(booking) => {
                let slot = items.swap_remove(0);
                let command = BookingCommand::Place {
                    customer_id,
                    slot_sku: slot.sku,
                    guests: slot.quantity,
                    unit_price: slot.unit_price,
                    expires_at,
                };
                booking.execute(command, meta, out)?;
            }
        }
        Ok(())
    }

    pub fn advance(&mut self, to: Move, meta: &str, out: &mut Recorder) -> anyhow::Result<()> {
        match self {
            Self::Order(order) => {
                let command = match to {
                    Move::Held => OrderCommand::ConfirmStockReserved,
                    Move::RequestPayment(payment_id) => OrderCommand::RequestPayment { payment_id },
                    Move::Complete(payment_id) => OrderCommand::Complete { payment_id },
                    Move::FailPayment => OrderCommand::FailPayment {
                        reason: "card_declined".to_owned(),
                    },
                    Move::Cancel => OrderCommand::Cancel {
                        reason: "customer cancelled".to_owned(),
                        by: Canceller::Customer,
                    },
                    Move::Expire => OrderCommand::Expire,
                    Move::FailStock(sku, reason) => OrderCommand::FailStock { sku, reason },
                };
                order.execute(command, meta, out)?;
            }
            Self::Booking(booking) => {
                let command = match to {
                    Move::Held => BookingCommand::MarkSeatsHeld,
                    Move::RequestPayment(payment_id) => {
                        BookingCommand::RequestPayment { payment_id }
                    }
                    Move::Complete(payment_id) => BookingCommand::Confirm { payment_id },
                    Move::FailPayment => BookingCommand::FailPayment {
                        reason: "card_declined".to_owned(),
                    },
                    Move::Cancel => BookingCommand::Cancel {
                        reason: "customer cancelled".to_owned(),
                    },
                    Move::Expire => BookingCommand::Expire,
                    Move::FailStock(_, reason) => BookingCommand::RejectSeats { reason },
                };
                booking.execute(command, meta, out)?;
            }
        }
        Ok(())
    }
}
