//! The booking flow: guests on one time slot, held as that slot's seats.

use domain::booking::{Booking, BookingCommand, BookingEvent, BookingStatus};
use domain::{BookingId, Owner, Quantity};
use uuid::Uuid;

use super::{Flow, Line, OwnerFact, OwnerStep, SagaState};

/// Holds a booking's seats, pays, confirms; compensates every failure.
pub struct BookingSaga;

impl Flow for BookingSaga {
    const NAME: &'static str = "booking_saga";
    type Owner = Booking;

    fn owner(id: Uuid) -> Owner {
        Owner::Booking(BookingId(id))
    }

    fn saga_of(owner: Owner) -> Option<Uuid> {
        match owner {
            Owner::Booking(id) => Some(id.0),
            Owner::Order(_) => None,
        }
    }

    fn read(event: BookingEvent) -> Option<OwnerFact> {
        match event {
            BookingEvent::BookingPlaced {
                slot_sku,
                guests,
                total,
                expires_at,
                ..
            } => Some(OwnerFact::Placed {
                // A placed booking has at least one guest (the aggregate checked it); a zero
                // here would be a corrupt event, which holds nothing.
                lines: Quantity::new(i64::from(guests))
                    .map(|quantity| Line {
                        sku: slot_sku,
                        quantity,
                    })
                    .into_iter()
                    .collect(),
                amount: total,
                expires_at,
            }),
            BookingEvent::BookingCancelled { .. } => Some(OwnerFact::Cancelled),
            BookingEvent::BookingExpired { .. } => Some(OwnerFact::Expired),
            _ => None,
        }
    }

    fn has_moved_on(booking: &Booking) -> bool {
        !matches!(booking.status(), None | Some(BookingStatus::PendingPayment))
    }

    fn ended_by_saga(booking: &Booking) -> Option<SagaState> {
        match booking.status() {
            Some(BookingStatus::PaymentFailed) => Some(SagaState::PaymentFailed),
            Some(BookingStatus::SeatsUnavailable) => Some(SagaState::StockFailed),
            _ => None,
        }
    }

    fn command(step: OwnerStep) -> BookingCommand {
        match step {
            OwnerStep::StockHeld => BookingCommand::MarkSeatsHeld,
            OwnerStep::StockFailed { reason, .. } => BookingCommand::RejectSeats { reason },
            OwnerStep::PaymentRequested(payment_id) => {
                BookingCommand::RequestPayment { payment_id }
            }
            OwnerStep::Paid(payment_id) => BookingCommand::Confirm { payment_id },
            OwnerStep::PaymentFailed(reason) => BookingCommand::FailPayment { reason },
            OwnerStep::Cancel(reason) => BookingCommand::Cancel { reason },
            OwnerStep::Refunded(payment_id, amount) => {
                BookingCommand::MarkRefunded { payment_id, amount }
            }
        }
    }
}
