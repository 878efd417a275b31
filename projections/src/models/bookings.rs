//! Bookings of time slots.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::Money;
use domain::booking::{Booking, BookingEvent, BookingStatus};
use domain::payment::Payment;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::read_model::{Applied, ReadModel};

/// One row of `rm_bookings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRow {
    /// The booking id.
    pub id: Uuid,
    /// Who booked.
    pub customer_id: Uuid,
    /// The time slot's SKU.
    pub slot_sku: String,
    /// Seats.
    pub guests: i32,
    /// Upper-case status name.
    pub status: String,
    /// Price of one seat when booked.
    pub unit_price: Money,
    /// `guests × unit_price`.
    pub total: Money,
    /// Its payment, once requested.
    pub payment_id: Option<Uuid>,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<String>,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it expires unless paid (`None` for ones placed before deadlines existed).
    pub expires_at: Option<DateTime<Utc>>,
    /// When its last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// Last event folded in.
    pub position: i64,
}

/// The `bookings` read model.
pub struct Bookings;

impl ReadModel for Bookings {
    const NAME: &'static str = "bookings";
    /// Bookings are read joined with their payments (see `joined`).
    const FOLLOWS: &'static [&'static str] = &[Payment::TYPE];
    const TABLE: &'static str = "rm_bookings";
    const KEY_TYPE: &'static str = "uuid";
    type Aggregate = Booking;
    type Row = BookingRow;

    fn apply(
        row: Option<BookingRow>,
        id: &str,
        event: BookingEvent,
        applied: Applied,
    ) -> Result<Option<BookingRow>, String> {
        let mut row = match (row, event) {
            (
                _,
                BookingEvent::BookingPlaced {
                    customer_id,
                    slot_sku,
                    guests,
                    unit_price,
                    total,
                    expires_at,
                },
            ) => BookingRow {
                id: id.parse().map_err(|e| format!("booking id {id}: {e}"))?,
                customer_id: customer_id.0,
                slot_sku: slot_sku.to_string(),
                guests: i32::try_from(guests).map_err(|e| format!("guests: {e}"))?,
                status: BookingStatus::PendingPayment.as_str().to_owned(),
                unit_price,
                total,
                payment_id: None,
                failure_reason: None,
                placed_at: applied.recorded_at,
                expires_at,
                updated_at: applied.recorded_at,
                position: 0,
            },
            (None, _) => return Err(super::missing(id)),
            (Some(mut row), event) => {
                let status = match event {
                    BookingEvent::BookingPlaced { .. } | BookingEvent::BookingSeatsHeld => {
                        BookingStatus::PendingPayment
                    }
                    BookingEvent::BookingSeatsUnavailable { reason } => {
                        row.failure_reason = Some(reason);
                        BookingStatus::SeatsUnavailable
                    }
                    BookingEvent::BookingPaymentRequested { payment_id } => {
                        row.payment_id = Some(payment_id.0);
                        BookingStatus::PendingPayment
                    }
                    BookingEvent::BookingConfirmed { payment_id } => {
                        row.payment_id = Some(payment_id.0);
                        BookingStatus::Confirmed
                    }
                    BookingEvent::BookingPaymentFailed { reason } => {
                        row.failure_reason = Some(reason);
                        BookingStatus::PaymentFailed
                    }
                    BookingEvent::BookingCancelled { reason, .. } => {
                        row.failure_reason = Some(reason);
                        BookingStatus::Cancelled
                    }
                    BookingEvent::BookingExpired { .. } => BookingStatus::Expired,
                    BookingEvent::BookingRefunded { .. } => BookingStatus::Refunded,
                };
                row.status = status.as_str().to_owned();
                row
            }
        };
        row.updated_at = applied.recorded_at;
        row.position = applied.position;
        Ok(Some(row))
    }
}
