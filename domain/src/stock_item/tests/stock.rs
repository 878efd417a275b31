//! Registration, restocks and adjustments.

use super::*;

#[test]
fn registering_a_product_or_a_time_slot_records_it() {
    let slot = StockKind::TimeSlot {
        starts_at: expires(),
    };
    for kind in [StockKind::Product, slot] {
        given(vec![])
            .when(register(10, 2, kind))
            .then_expect_events(vec![StockItemEvent::StockItemRegistered {
                sku: sku(),
                name: "Clay mug".into(),
                kind,
                on_hand: 10,
                low_stock_threshold: 2,
                unit_price: mxn(1500),
            }]);
    }
}

#[test]
fn registering_at_or_below_the_threshold_emits_no_alert() {
    given(vec![])
        .when(register(0, 5, StockKind::Product))
        .then_expect_events(vec![registered_with_threshold(0, 5)]);
}

#[test]
fn registering_twice_is_refused() {
    given(vec![registered(10)])
        .when(register(10, 0, StockKind::Product))
        .then_expect_error(StockItemError::AlreadyRegistered);
}

#[test]
fn every_command_before_registration_is_refused() {
    let commands = [
        StockItemCommand::Restock { quantity: qty(1) },
        adjust(1),
        reserve(1, 1),
        commit(1),
        release(1),
    ];
    for command in commands {
        TestFramework::<StockItem>::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(StockItemError::NotRegistered);
    }
}

#[test]
fn restocking_adds_units() {
    given(vec![registered(10)])
        .when(StockItemCommand::Restock { quantity: qty(5) })
        .then_expect_events(vec![StockItemEvent::StockRestocked {
            quantity: 5,
            on_hand: 15,
        }]);
}

#[test]
fn adjusting_up_or_down_corrects_on_hand() {
    given(vec![registered(10)])
        .when(adjust(5))
        .then_expect_events(vec![adjusted(5, 15)]);
    given(vec![registered(10)])
        .when(adjust(-3))
        .then_expect_events(vec![adjusted(-3, 7)]);
}

#[test]
fn adjusting_below_reserved_or_below_zero_is_refused() {
    given(vec![registered(10), reserved(1, 6)])
        .when(adjust(-5))
        .then_expect_error(StockItemError::AdjustmentBelowReserved {
            delta: -5,
            on_hand: 5,
            reserved: 6,
        });
    given(vec![registered(3)])
        .when(adjust(-4))
        .then_expect_error(StockItemError::AdjustmentBelowReserved {
            delta: -4,
            on_hand: -1,
            reserved: 0,
        });
}

#[test]
fn restocking_or_adjusting_past_the_counter_limit_is_refused() {
    given(vec![registered(u32::MAX)])
        .when(StockItemCommand::Restock { quantity: qty(1) })
        .then_expect_error(StockItemError::CountOverflow);
    given(vec![registered(10)])
        .when(adjust(i64::from(u32::MAX)))
        .then_expect_error(StockItemError::CountOverflow);
}

#[test]
fn adjusting_down_to_exactly_the_reserved_count_depletes_the_item() {
    given(vec![registered(10), reserved(1, 6)])
        .when(adjust(-4))
        .then_expect_events(vec![adjusted(-4, 6), StockItemEvent::StockDepleted]);
}
