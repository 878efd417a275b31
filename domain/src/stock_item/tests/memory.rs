//! The closed-reservation memory stays bounded, and idempotency holds across forgetting.

use super::*;
use crate::stock_item::memory::RETAINED;
use chrono::Duration;

fn reserved_at(id: u128, expires_at: DateTime<Utc>) -> StockItemEvent {
    StockItemEvent::StockReserved {
        reservation_id: rid(id),
        quantity: 1,
        owner: owner(),
        expires_at,
    }
}

/// A year of daily sales: one hold a day, each sold at once.
fn a_year_of_sales() -> (StockItem, DateTime<Utc>) {
    (item_after(&item_events()), expires())
}

#[test]
fn closed_reservations_are_remembered_for_a_bounded_time_only() {
    let (item, _) = a_year_of_sales();

    let retained_days = RETAINED.num_days() as usize;
    assert!(
        item.remembered() <= retained_days + 1,
        "{} remembered after 365 sales, more than {retained_days} days' worth",
        item.remembered()
    );
    assert!(item.remembered() >= retained_days - 1);
}

#[test]
fn a_late_retry_of_a_forgotten_reserve_is_still_a_no_op() {
    let (item, start) = a_year_of_sales();
    let forgotten = StockItemCommand::Reserve {
        reservation_id: rid(0),
        quantity: qty(1),
        owner: owner(),
        expires_at: start,
    };

    let events = TestFramework::<StockItem>::with(())
        .given(item_events())
        .when(forgotten)
        .inspect_result()
        .unwrap();

    assert!(item.reservations().is_empty());
    assert!(
        events.is_empty(),
        "re-reserved a forgotten hold: {events:?}"
    );
}

#[test]
fn a_recent_sale_can_still_be_returned_and_a_fresh_hold_is_taken() {
    let recent = 364;
    given(item_events())
        .when(StockItemCommand::ReturnReservation {
            reservation_id: rid(recent),
        })
        .then_expect_events(vec![StockItemEvent::ReservationReturned {
            reservation_id: rid(recent),
            quantity: 1,
            on_hand: 636,
        }]);
    given(item_events())
        .when(StockItemCommand::Reserve {
            reservation_id: rid(1_000),
            quantity: qty(2),
            owner: owner(),
            expires_at: expires() + Duration::days(366),
        })
        .then_expect_events(vec![StockItemEvent::StockReserved {
            reservation_id: rid(1_000),
            quantity: 2,
            owner: owner(),
            expires_at: expires() + Duration::days(366),
        }]);
}

/// One hold a day for a year, each sold at once.
fn item_events() -> Vec<StockItemEvent> {
    let start = expires();
    let mut events = vec![registered(1_000)];
    let mut on_hand = 1_000;
    for day in 0..365 {
        on_hand -= 1;
        events.push(reserved_at(day, start + Duration::days(day as i64)));
        events.push(committed(day, 1, on_hand));
    }
    events
}

fn item_after(events: &[StockItemEvent]) -> StockItem {
    let mut item = StockItem::default();
    for event in events {
        item.apply(event.clone());
    }
    item
}
