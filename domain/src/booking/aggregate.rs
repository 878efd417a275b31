use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use std::fmt;

use super::command::BookingCommand;
use super::error::BookingError;
use super::event::BookingEvent;
use crate::status::{StatusMachine, Transition, decide};
use crate::{CustomerId, Money, PaymentId, Sku};

/// Where a booking is in its life. Serialized as the upper-case names clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    /// Placed; seats being held and paid for.
    PendingPayment,
    /// Paid; seats committed.
    Confirmed,
    /// The slot had too few seats (end).
    SeatsUnavailable,
    /// Cancelled (end, unless a refund follows).
    Cancelled,
    /// Not paid in time (end, unless a late payment is refunded).
    Expired,
    /// The payment failed (end).
    PaymentFailed,
    /// Money returned (end).
    Refunded,
}

impl BookingStatus {
    /// The upper-case name, e.g. `PENDING_PAYMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Confirmed => "CONFIRMED",
            Self::SeatsUnavailable => "SEATS_UNAVAILABLE",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::PaymentFailed => "PAYMENT_FAILED",
            Self::Refunded => "REFUNDED",
        }
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StatusMachine for BookingStatus {
    fn can_move_to(self, to: Self) -> bool {
        use BookingStatus::*;
        matches!(
            (self, to),
            (
                PendingPayment,
                Confirmed | SeatsUnavailable | Cancelled | Expired | PaymentFailed
            ) | (Confirmed, Cancelled | Refunded)
                | (Cancelled | Expired | PaymentFailed, Refunded)
        )
    }
}

/// The state of one booking, rebuilt from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    status: Option<BookingStatus>,
    customer_id: Option<CustomerId>,
    slot_sku: Option<Sku>,
    guests: u32,
    total: Option<Money>,
    seats_held: bool,
    payment_id: Option<PaymentId>,
    failure_reason: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

impl Booking {
    /// Current status; `None` before the booking is placed.
    pub fn status(&self) -> Option<BookingStatus> {
        self.status
    }
    /// Who booked.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.customer_id
    }
    /// The slot.
    pub fn slot_sku(&self) -> Option<&Sku> {
        self.slot_sku.as_ref()
    }
    /// Seats.
    pub fn guests(&self) -> u32 {
        self.guests
    }
    /// guests × seat price.
    pub fn total(&self) -> Option<Money> {
        self.total
    }
    /// Whether the seats are held on the slot.
    pub fn seats_held(&self) -> bool {
        self.seats_held
    }
    /// The payment requested, if any.
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.payment_id
    }
    /// When the booking expires if unpaid.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }
    /// Why the booking failed, if it did.
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }

    fn transition(&self, to: BookingStatus) -> Result<Option<BookingStatus>, BookingError> {
        let from = self.status.ok_or(BookingError::NotFound)?;
        match decide(from, to) {
            Transition::AlreadyThere => Ok(None),
            Transition::Allowed => Ok(Some(from)),
            Transition::Illegal => Err(BookingError::IllegalTransition { from, to }),
        }
    }

    fn require_pending(&self) -> Result<(), BookingError> {
        match self.status {
            None => Err(BookingError::NotFound),
            Some(BookingStatus::PendingPayment) => Ok(()),
            Some(from) => Err(BookingError::IllegalTransition {
                from,
                to: BookingStatus::PendingPayment,
            }),
        }
    }

    fn own_payment(&self, payment_id: PaymentId) -> Result<(), BookingError> {
        match self.payment_id {
            Some(own) if own == payment_id => Ok(()),
            _ => Err(BookingError::PaymentMismatch(payment_id)),
        }
    }

    fn decide(&self, command: BookingCommand) -> Result<Option<BookingEvent>, BookingError> {
        use BookingStatus as S;
        Ok(match command {
            BookingCommand::Place {
                customer_id,
                slot_sku,
                guests,
                unit_price,
                expires_at,
            } => {
                if self.status.is_some() {
                    return Err(BookingError::AlreadyPlaced);
                }
                let total = unit_price
                    .checked_mul(guests.get())
                    .map_err(BookingError::Total)?;
                Some(BookingEvent::BookingPlaced {
                    customer_id,
                    slot_sku,
                    guests: guests.get(),
                    unit_price,
                    total,
                    expires_at: Some(expires_at),
                })
            }
            BookingCommand::MarkSeatsHeld => {
                self.require_pending()?;
                (!self.seats_held).then_some(BookingEvent::BookingSeatsHeld)
            }
            BookingCommand::RejectSeats { reason } => {
                let from = self.transition(S::SeatsUnavailable)?;
                if let Some(from) = from.filter(|_| self.seats_held) {
                    // Seats already held cannot be "unavailable": the saga must release them.
                    return Err(BookingError::IllegalTransition {
                        from,
                        to: S::SeatsUnavailable,
                    });
                }
                from.map(|_| BookingEvent::BookingSeatsUnavailable { reason })
            }
            BookingCommand::RequestPayment { payment_id } => {
                self.require_pending()?;
                if !self.seats_held {
                    return Err(BookingError::SeatsNotHeld);
                }
                match self.payment_id {
                    None => Some(BookingEvent::BookingPaymentRequested { payment_id }),
                    Some(own) if own == payment_id => None,
                    Some(_) => return Err(BookingError::PaymentMismatch(payment_id)),
                }
            }
            BookingCommand::Confirm { payment_id } => {
                let from = self.transition(S::Confirmed)?;
                if !self.seats_held {
                    return Err(BookingError::SeatsNotHeld);
                }
                self.own_payment(payment_id)?;
                from.map(|_| BookingEvent::BookingConfirmed { payment_id })
            }
            BookingCommand::FailPayment { reason } => self
                .transition(S::PaymentFailed)?
                .map(|_| BookingEvent::BookingPaymentFailed { reason }),
            BookingCommand::Cancel { reason } => self
                .transition(S::Cancelled)?
                .map(|from| BookingEvent::BookingCancelled { reason, from }),
            BookingCommand::Expire => self
                .transition(S::Expired)?
                .map(|from| BookingEvent::BookingExpired { from }),
            BookingCommand::MarkRefunded { payment_id, amount } => {
                let from = self.transition(S::Refunded)?;
                self.own_payment(payment_id)?;
                from.map(|_| BookingEvent::BookingRefunded { payment_id, amount })
            }
        })
    }
}

impl Aggregate for Booking {
    const TYPE: &'static str = "booking";
    type Command = BookingCommand;
    type Event = BookingEvent;
    type Error = BookingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use BookingStatus as S;
        match event {
            BookingEvent::BookingPlaced {
                customer_id,
                slot_sku,
                guests,
                total,
                expires_at,
                ..
            } => {
                self.status = Some(S::PendingPayment);
                self.expires_at = expires_at;
                self.customer_id = Some(customer_id);
                self.slot_sku = Some(slot_sku);
                self.guests = guests;
                self.total = Some(total);
            }
            BookingEvent::BookingSeatsHeld => self.seats_held = true,
            BookingEvent::BookingSeatsUnavailable { reason } => {
                self.status = Some(S::SeatsUnavailable);
                self.failure_reason = Some(reason);
            }
            BookingEvent::BookingPaymentRequested { payment_id } => {
                self.payment_id = Some(payment_id);
            }
            BookingEvent::BookingConfirmed { .. } => self.status = Some(S::Confirmed),
            BookingEvent::BookingPaymentFailed { reason } => {
                self.status = Some(S::PaymentFailed);
                self.failure_reason = Some(reason);
            }
            BookingEvent::BookingCancelled { reason, .. } => {
                self.status = Some(S::Cancelled);
                self.failure_reason = Some(reason);
            }
            BookingEvent::BookingExpired { .. } => self.status = Some(S::Expired),
            BookingEvent::BookingRefunded { .. } => self.status = Some(S::Refunded),
        }
    }
}
