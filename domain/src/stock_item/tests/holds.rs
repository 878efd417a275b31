//! Reservations: holding, committing, releasing and returning units.

use super::*;

#[test]
fn reserving_available_units_holds_them() {
    given(vec![registered(10), reserved(1, 3)])
        .when(reserve(2, 4))
        .then_expect_events(vec![reserved(2, 4)]);
}

#[test]
fn reserving_more_than_available_is_refused() {
    given(vec![registered(10), reserved(1, 7)])
        .when(reserve(2, 4))
        .then_expect_error(StockItemError::InsufficientStock {
            requested: 4,
            available: 3,
        });
}

#[test]
fn reserving_with_an_id_already_held_records_nothing() {
    // Even though nothing is left: a saga retry must not turn into insufficient_stock.
    given(vec![registered(5), reserved(1, 5)])
        .when(reserve(1, 5))
        .then_expect_events(vec![]);
}

#[test]
fn reserving_with_an_id_already_released_or_committed_records_nothing() {
    for closed in [released(1, 2), committed(1, 2, 8)] {
        given(vec![registered(10), reserved(1, 2), closed])
            .when(reserve(1, 2))
            .then_expect_events(vec![]);
    }
}

#[test]
fn committing_a_hold_turns_it_into_a_sale() {
    given(vec![registered(10), reserved(1, 4)])
        .when(commit(1))
        .then_expect_events(vec![committed(1, 4, 6)]);
}

#[test]
fn committing_leaves_availability_and_its_alerts_unchanged() {
    given(vec![registered_with_threshold(5, 2), reserved(1, 5)])
        .when(commit(1))
        .then_expect_events(vec![committed(1, 5, 0)]);
}

#[test]
fn committing_twice_records_nothing() {
    given(vec![registered(10), reserved(1, 4), committed(1, 4, 6)])
        .when(commit(1))
        .then_expect_events(vec![]);
}

#[test]
fn committing_a_released_hold_is_refused() {
    given(vec![registered(10), reserved(1, 4), released(1, 4)])
        .when(commit(1))
        .then_expect_error(StockItemError::ReservationReleased(rid(1)));
}

#[test]
fn committing_an_unknown_hold_is_refused() {
    given(vec![registered(10), reserved(1, 4)])
        .when(commit(2))
        .then_expect_error(StockItemError::ReservationNotFound(rid(2)));
}

#[test]
fn releasing_a_hold_returns_its_units_for_every_reason() {
    use ReleaseReason::*;
    for reason in [Cancelled, Expired, PaymentFailed, Compensation] {
        given(vec![registered(10), reserved(1, 4)])
            .when(StockItemCommand::ReleaseReservation {
                reservation_id: rid(1),
                reason,
            })
            .then_expect_events(vec![StockItemEvent::ReservationReleased {
                reservation_id: rid(1),
                quantity: 4,
                reason,
            }]);
    }
}

#[test]
fn releasing_twice_records_nothing() {
    given(vec![registered(10), reserved(1, 4), released(1, 4)])
        .when(release(1))
        .then_expect_events(vec![]);
}

#[test]
fn releasing_a_hold_never_made_records_nothing() {
    given(vec![registered(10)])
        .when(release(7))
        .then_expect_events(vec![]);
}

#[test]
fn releasing_a_committed_hold_is_refused() {
    given(vec![registered(10), reserved(1, 4), committed(1, 4, 6)])
        .when(release(1))
        .then_expect_error(StockItemError::ReservationCommitted(rid(1)));
}

fn return_sold(id: u128) -> StockItemCommand {
    StockItemCommand::ReturnReservation {
        reservation_id: rid(id),
    }
}
fn returned(id: u128, quantity: u32, on_hand: u32) -> StockItemEvent {
    StockItemEvent::ReservationReturned {
        reservation_id: rid(id),
        quantity,
        on_hand,
    }
}

#[test]
fn returning_a_sale_puts_its_units_back_on_hand() {
    given(vec![registered(10), reserved(1, 4), committed(1, 4, 6)])
        .when(return_sold(1))
        .then_expect_events(vec![returned(1, 4, 10)]);
}

#[test]
fn returning_a_sale_puts_back_only_its_own_units() {
    // Other holds and sales stay as they are: on_hand grows by exactly the returned sale.
    given(vec![
        registered(10),
        reserved(1, 4),
        reserved(2, 3),
        committed(1, 4, 6),
        reserved(3, 2),
        committed(3, 2, 4),
    ])
    .when(return_sold(3))
    .then_expect_events(vec![returned(3, 2, 6)]);
}

#[test]
fn returning_a_sale_that_emptied_the_item_reports_no_alert() {
    // Availability only rises, so neither low stock nor depletion is reported again.
    given(vec![
        registered_with_threshold(5, 2),
        reserved(1, 5),
        low(0, 2),
        StockItemEvent::StockDepleted,
        committed(1, 5, 0),
    ])
    .when(return_sold(1))
    .then_expect_events(vec![returned(1, 5, 5)]);
}

#[test]
fn returning_twice_records_nothing() {
    given(vec![
        registered(10),
        reserved(1, 4),
        committed(1, 4, 6),
        returned(1, 4, 10),
    ])
    .when(return_sold(1))
    .then_expect_events(vec![]);
}

#[test]
fn a_returned_sale_cannot_be_released_and_committing_it_again_records_nothing() {
    let history = || {
        vec![
            registered(10),
            reserved(1, 4),
            committed(1, 4, 6),
            returned(1, 4, 10),
        ]
    };
    given(history())
        .when(release(1))
        .then_expect_error(StockItemError::ReservationCommitted(rid(1)));
    given(history()).when(commit(1)).then_expect_events(vec![]);
}

#[test]
fn returning_a_hold_not_yet_committed_is_refused() {
    given(vec![registered(10), reserved(1, 4)])
        .when(return_sold(1))
        .then_expect_error(StockItemError::ReservationNotCommitted(rid(1)));
}

#[test]
fn returning_a_released_hold_is_refused() {
    given(vec![registered(10), reserved(1, 4), released(1, 4)])
        .when(return_sold(1))
        .then_expect_error(StockItemError::ReservationReleased(rid(1)));
}

#[test]
fn returning_an_unknown_reservation_is_refused() {
    given(vec![registered(10), reserved(1, 4), committed(1, 4, 6)])
        .when(return_sold(2))
        .then_expect_error(StockItemError::ReservationNotFound(rid(2)));
}

#[test]
fn returning_before_registration_is_refused() {
    TestFramework::<StockItem>::with(())
        .given_no_previous_events()
        .when(return_sold(1))
        .then_expect_error(StockItemError::NotRegistered);
}

#[test]
fn low_stock_is_reported_when_availability_crosses_down_to_the_threshold() {
    given(vec![registered_with_threshold(10, 3)])
        .when(reserve(1, 7))
        .then_expect_events(vec![reserved(1, 7), low(3, 3)]);
    given(vec![registered_with_threshold(10, 3)])
        .when(adjust(-8))
        .then_expect_events(vec![adjusted(-8, 2), low(2, 3)]);
}

#[test]
fn low_stock_is_not_reported_when_availability_was_already_below() {
    given(vec![registered_with_threshold(10, 3), reserved(1, 8)])
        .when(reserve(2, 1))
        .then_expect_events(vec![reserved(2, 1)]);
}

#[test]
fn low_stock_is_never_reported_with_a_zero_threshold() {
    given(vec![registered(10)])
        .when(reserve(1, 9))
        .then_expect_events(vec![reserved(1, 9)]);
}

#[test]
fn reaching_zero_reports_depletion() {
    given(vec![registered(5)])
        .when(reserve(1, 5))
        .then_expect_events(vec![reserved(1, 5), StockItemEvent::StockDepleted]);
}

#[test]
fn reaching_zero_from_above_the_threshold_reports_low_stock_then_depletion() {
    given(vec![registered_with_threshold(10, 3)])
        .when(reserve(1, 10))
        .then_expect_events(vec![
            reserved(1, 10),
            low(0, 3),
            StockItemEvent::StockDepleted,
        ]);
}

#[test]
fn adding_availability_never_reports_alerts() {
    let low_history = || vec![registered_with_threshold(10, 3), reserved(1, 10)];
    given(low_history())
        .when(release(1))
        .then_expect_events(vec![released(1, 10)]);
    given(low_history())
        .when(StockItemCommand::Restock { quantity: qty(1) })
        .then_expect_events(vec![StockItemEvent::StockRestocked {
            quantity: 1,
            on_hand: 11,
        }]);
}

/// Drives a long pseudo-random sequence of commands through the framework, feeding each
/// command's events back as history, and checks the counting invariants after every step.
#[test]
fn open_holds_never_exceed_on_hand_across_a_long_sequence() {
    let mut history = vec![registered_with_threshold(20, 5)];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..400 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let id = u128::from((seed >> 33) % 12);
        let n = u32::try_from((seed >> 40) % 9).unwrap() + 1;
        let command = match (seed >> 20) % 6 {
            0 | 1 => reserve(id, n),
            2 => commit(id),
            3 => release(id),
            4 => StockItemCommand::Restock { quantity: qty(n) },
            _ => adjust(-i64::from(n)),
        };
        if let Ok(events) = given(history.clone()).when(command).inspect_result() {
            history.extend(events);
        }
        let mut item = StockItem::default();
        history.iter().cloned().for_each(|e| item.apply(e));
        assert!(item.reserved() <= item.on_hand(), "{item:?}");
    }
    assert!(history.len() > 100, "the sequence exercised too little");
}
