//! When unpaid orders and bookings expire: one row per open one that has a deadline.
//!
//! The rows are a fold of the events that set a deadline (`OrderPlaced` / `BookingPlaced` with
//! `expires_at`) and of those that end it (every move out of the open statuses), so the table
//! is rebuildable like any other read model. The expiry job (`commands::deadlines`) claims due
//! rows by setting `claimed_until`; the projector keeps that column as it finds it while the
//! row lives. A rebuild starts every row unclaimed, which at worst repeats an expiry command,
//! and expiry is idempotent.

use chrono::{DateTime, Utc};
use commands::deadlines::{BOOKING_DEADLINES, ORDER_DEADLINES};
use domain::booking::{Booking, BookingEvent};
use domain::order::{Order, OrderEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::read_model::{Applied, ReadModel};

/// One row of `rm_order_deadlines` or `rm_booking_deadlines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineRow {
    /// The order or booking id.
    pub id: Uuid,
    /// When it expires unless it ends first.
    pub due_at: DateTime<Utc>,
    /// Until when an expiry job holds it (`None` while unclaimed); owned by the job.
    pub claimed_until: Option<DateTime<Utc>>,
    /// Last event folded in.
    pub position: i64,
}

/// What an event does to a deadline.
enum Effect {
    /// The order or booking was placed: a deadline when it has one.
    Set(Option<DateTime<Utc>>),
    /// Still open: the deadline stands.
    Keep,
    /// It ended: no deadline any more.
    End,
}

fn fold(
    row: Option<DeadlineRow>,
    id: &str,
    effect: Effect,
    applied: Applied,
) -> Result<Option<DeadlineRow>, String> {
    Ok(match effect {
        Effect::Set(None) | Effect::End => None,
        Effect::Set(Some(due_at)) => Some(DeadlineRow {
            id: id.parse().map_err(|e| format!("id {id}: {e}"))?,
            due_at,
            claimed_until: None,
            position: applied.position,
        }),
        // No row here is no deadline (placed without one), not a missing row.
        Effect::Keep => row.map(|row| DeadlineRow {
            position: applied.position,
            ..row
        }),
    })
}

/// The `order_deadlines` read model: orders in `STARTED`, `STOCK_RESERVED` or
/// `PAYMENT_PENDING` with a deadline.
pub struct OrderDeadlines;

impl ReadModel for OrderDeadlines {
    const NAME: &'static str = "order_deadlines";
    const TABLE: &'static str = ORDER_DEADLINES;
    const KEY_TYPE: &'static str = "uuid";
    type Aggregate = Order;
    type Row = DeadlineRow;

    fn apply(
        row: Option<DeadlineRow>,
        id: &str,
        event: OrderEvent,
        applied: Applied,
    ) -> Result<Option<DeadlineRow>, String> {
        let effect = match event {
            OrderEvent::OrderPlaced { expires_at, .. } => Effect::Set(expires_at),
            OrderEvent::OrderStockReserved | OrderEvent::OrderPaymentRequested { .. } => {
                Effect::Keep
            }
            OrderEvent::OrderStockFailed { .. }
            | OrderEvent::OrderCompleted { .. }
            | OrderEvent::OrderPaymentFailed { .. }
            | OrderEvent::OrderCancelled { .. }
            | OrderEvent::OrderExpired { .. }
            | OrderEvent::OrderRefunded { .. } => Effect::End,
        };
        fold(row, id, effect, applied)
    }
}

/// The `booking_deadlines` read model: bookings in `PENDING_PAYMENT` with a deadline.
pub struct BookingDeadlines;

impl ReadModel for BookingDeadlines {
    const NAME: &'static str = "booking_deadlines";
    const TABLE: &'static str = BOOKING_DEADLINES;
    const KEY_TYPE: &'static str = "uuid";
    type Aggregate = Booking;
    type Row = DeadlineRow;

    fn apply(
        row: Option<DeadlineRow>,
        id: &str,
        event: BookingEvent,
        applied: Applied,
    ) -> Result<Option<DeadlineRow>, String> {
        let effect = match event {
            BookingEvent::BookingPlaced { expires_at, .. } => Effect::Set(expires_at),
            // Seats held and payment requested: still PENDING_PAYMENT.
            BookingEvent::BookingSeatsHeld | BookingEvent::BookingPaymentRequested { .. } => {
                Effect::Keep
            }
            BookingEvent::BookingSeatsUnavailable { .. }
            | BookingEvent::BookingConfirmed { .. }
            | BookingEvent::BookingPaymentFailed { .. }
            | BookingEvent::BookingCancelled { .. }
            | BookingEvent::BookingExpired { .. }
            | BookingEvent::BookingRefunded { .. } => Effect::End,
        };
        fold(row, id, effect, applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use domain::booking::BookingStatus;
    use domain::order::{OrderItem, OrderStatus};
    use domain::{Currency, CustomerId, Money, PaymentId, Quantity, Sku};

    const ID: &str = "0b6b7f3e-5d0a-4a53-9a4e-2f1f4c1a9d10";

    fn at(position: i64) -> Applied {
        Applied {
            position,
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap(),
        }
    }

    fn due() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 15, 0).unwrap()
    }

    fn price() -> Money {
        Money::new(1500, Currency::parse("MXN").unwrap()).unwrap()
    }

    fn placed_order(expires_at: Option<DateTime<Utc>>) -> OrderEvent {
        OrderEvent::OrderPlaced {
            customer_id: CustomerId(Uuid::nil()),
            items: vec![OrderItem {
                sku: Sku::parse("MUG-001").unwrap(),
                quantity: Quantity::new(1).unwrap(),
                unit_price: price(),
            }],
            total: price(),
            expires_at,
        }
    }

    fn placed_booking(expires_at: Option<DateTime<Utc>>) -> BookingEvent {
        BookingEvent::BookingPlaced {
            customer_id: CustomerId(Uuid::nil()),
            slot_sku: Sku::parse("TOUR-0900").unwrap(),
            guests: 2,
            unit_price: price(),
            total: price(),
            expires_at,
        }
    }

    /// Folds `events` from no row, as the projector does, one position each.
    fn fold_all<M: ReadModel>(
        events: Vec<<M::Aggregate as cqrs_es::Aggregate>::Event>,
    ) -> Option<M::Row> {
        events
            .into_iter()
            .zip(1..)
            .try_fold(None, |row, (event, position)| {
                M::apply(row, ID, event, at(position))
            })
            .unwrap()
    }

    fn claimed(row: DeadlineRow) -> DeadlineRow {
        DeadlineRow {
            claimed_until: Some(due()),
            ..row
        }
    }

    #[test]
    fn an_order_placed_with_a_deadline_is_due_then() {
        let row = fold_all::<OrderDeadlines>(vec![placed_order(Some(due()))]).unwrap();
        assert_eq!(
            row,
            DeadlineRow {
                id: ID.parse().unwrap(),
                due_at: due(),
                claimed_until: None,
                position: 1,
            }
        );
    }

    #[test]
    fn an_order_placed_without_a_deadline_has_no_row_even_as_it_moves_on() {
        let events = vec![
            placed_order(None),
            OrderEvent::OrderStockReserved,
            OrderEvent::OrderPaymentRequested {
                payment_id: PaymentId(Uuid::nil()),
            },
        ];
        assert_eq!(fold_all::<OrderDeadlines>(events), None);
    }

    #[test]
    fn an_open_order_keeps_its_deadline_and_its_claim() {
        let placed = fold_all::<OrderDeadlines>(vec![placed_order(Some(due()))]).unwrap();
        let payment_id = PaymentId(Uuid::nil());
        let row = [
            OrderEvent::OrderStockReserved,
            OrderEvent::OrderPaymentRequested { payment_id },
        ]
        .into_iter()
        .zip([7, 9])
        .try_fold(Some(claimed(placed)), |row, (event, position)| {
            OrderDeadlines::apply(row, ID, event, at(position))
        })
        .unwrap()
        .unwrap();
        assert_eq!((row.due_at, row.claimed_until), (due(), Some(due())));
        assert_eq!(row.position, 9);
    }

    #[test]
    fn every_end_of_an_order_removes_its_deadline() {
        let payment_id = PaymentId(Uuid::nil());
        let ends = [
            OrderEvent::OrderStockFailed {
                sku: Sku::parse("MUG-001").unwrap(),
                reason: "insufficient stock".to_owned(),
            },
            OrderEvent::OrderCompleted { payment_id },
            OrderEvent::OrderPaymentFailed {
                reason: "declined".to_owned(),
            },
            OrderEvent::OrderCancelled {
                reason: "changed my mind".to_owned(),
                from: OrderStatus::PaymentPending,
            },
            OrderEvent::OrderExpired {
                from: OrderStatus::PaymentPending,
            },
            OrderEvent::OrderRefunded {
                payment_id,
                amount: price(),
            },
        ];
        for end in ends {
            let events = vec![placed_order(Some(due())), end.clone()];
            assert_eq!(fold_all::<OrderDeadlines>(events), None, "{end:?}");
        }
    }

    #[test]
    fn a_booking_stays_due_while_seats_are_held_and_payment_is_requested() {
        let events = vec![
            placed_booking(Some(due())),
            BookingEvent::BookingSeatsHeld,
            BookingEvent::BookingPaymentRequested {
                payment_id: PaymentId(Uuid::nil()),
            },
        ];
        let row = fold_all::<BookingDeadlines>(events).unwrap();
        assert_eq!(
            (row.due_at, row.claimed_until, row.position),
            (due(), None, 3)
        );
    }

    #[test]
    fn a_booking_placed_without_a_deadline_has_no_row() {
        let events = vec![placed_booking(None), BookingEvent::BookingSeatsHeld];
        assert_eq!(fold_all::<BookingDeadlines>(events), None);
    }

    #[test]
    fn every_end_of_a_booking_removes_its_deadline() {
        let payment_id = PaymentId(Uuid::nil());
        let ends = [
            BookingEvent::BookingSeatsUnavailable {
                reason: "full".to_owned(),
            },
            BookingEvent::BookingConfirmed { payment_id },
            BookingEvent::BookingPaymentFailed {
                reason: "declined".to_owned(),
            },
            BookingEvent::BookingCancelled {
                reason: "rain".to_owned(),
                from: BookingStatus::PendingPayment,
            },
            BookingEvent::BookingExpired {
                from: BookingStatus::PendingPayment,
            },
            BookingEvent::BookingRefunded {
                payment_id,
                amount: price(),
            },
        ];
        for end in ends {
            let events = vec![placed_booking(Some(due())), end.clone()];
            assert_eq!(fold_all::<BookingDeadlines>(events), None, "{end:?}");
        }
    }

    #[test]
    fn a_deadline_needs_an_id_that_is_a_uuid() {
        let error = OrderDeadlines::apply(None, "not-a-uuid", placed_order(Some(due())), at(1));
        assert!(error.is_err());
        let none = OrderDeadlines::apply(None, "not-a-uuid", placed_order(None), at(1));
        assert_eq!(none, Ok(None));
    }
}
