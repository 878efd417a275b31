use super::*;
use crate::{Currency, CustomerId, Money, MoneyError, PaymentId, Quantity, Sku};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use BookingStatus as S;

fn customer() -> CustomerId {
    CustomerId(Uuid::from_u128(7))
}
fn pay() -> PaymentId {
    PaymentId(Uuid::from_u128(100))
}
fn other_pay() -> PaymentId {
    PaymentId(Uuid::from_u128(200))
}
fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}
fn slot() -> Sku {
    Sku::parse("TOUR-0900").unwrap()
}
fn place(unit_price: Money) -> BookingCommand {
    BookingCommand::Place {
        customer_id: customer(),
        slot_sku: slot(),
        guests: Quantity::new(3).unwrap(),
        unit_price,
        expires_at: deadline(),
    }
}
fn deadline() -> chrono::DateTime<chrono::Utc> {
    "2030-01-01T00:30:00Z".parse().unwrap()
}
fn placed() -> BookingEvent {
    BookingEvent::BookingPlaced {
        customer_id: customer(),
        slot_sku: slot(),
        guests: 3,
        unit_price: mxn(2000),
        total: mxn(6000),
        expires_at: Some(deadline()),
    }
}
fn requested(payment_id: PaymentId) -> BookingEvent {
    BookingEvent::BookingPaymentRequested { payment_id }
}
fn held() -> Vec<BookingEvent> {
    vec![placed(), BookingEvent::BookingSeatsHeld]
}
fn given(events: Vec<BookingEvent>) -> AggregateTestExecutor<Booking> {
    TestFramework::<Booking>::with(()).given(events)
}

const ALL: [BookingStatus; 7] = [
    S::PendingPayment,
    S::Confirmed,
    S::SeatsUnavailable,
    S::Cancelled,
    S::Expired,
    S::PaymentFailed,
    S::Refunded,
];

/// The events that bring a fresh booking to `status`, with its seats held and its payment
/// requested wherever the path allows (so that confirmations and refunds name its own payment).
fn history(status: BookingStatus) -> Vec<BookingEvent> {
    let pending = [held(), vec![requested(pay())]].concat();
    let confirmed = [
        pending.clone(),
        vec![event_for(S::PendingPayment, S::Confirmed)],
    ]
    .concat();
    let (mut events, last) = match status {
        S::PendingPayment => return pending,
        S::Confirmed => return confirmed,
        S::SeatsUnavailable => (vec![placed()], S::SeatsUnavailable),
        S::Refunded => (confirmed, S::Refunded),
        end => (pending, end),
    };
    events.push(event_for(S::PendingPayment, last));
    events
}

/// The command asking for `to`. MarkSeatsHeld stands for `PENDING_PAYMENT`: it is only accepted
/// there, and elsewhere is refused as a move back to it.
fn command_to(to: BookingStatus) -> BookingCommand {
    match to {
        S::PendingPayment => BookingCommand::MarkSeatsHeld,
        S::Confirmed => BookingCommand::Confirm { payment_id: pay() },
        S::SeatsUnavailable => BookingCommand::RejectSeats {
            reason: "sold out".into(),
        },
        S::Cancelled => BookingCommand::Cancel {
            reason: "rain".into(),
        },
        S::Expired => BookingCommand::Expire,
        S::PaymentFailed => BookingCommand::FailPayment {
            reason: "card_declined".into(),
        },
        S::Refunded => BookingCommand::MarkRefunded {
            payment_id: pay(),
            amount: mxn(6000),
        },
    }
}

/// The event a legal move `from → to` records.
fn event_for(from: BookingStatus, to: BookingStatus) -> BookingEvent {
    match to {
        S::PendingPayment => BookingEvent::BookingSeatsHeld,
        S::Confirmed => BookingEvent::BookingConfirmed { payment_id: pay() },
        S::SeatsUnavailable => BookingEvent::BookingSeatsUnavailable {
            reason: "sold out".into(),
        },
        S::Cancelled => BookingEvent::BookingCancelled {
            reason: "rain".into(),
            from,
        },
        S::Expired => BookingEvent::BookingExpired { from },
        S::PaymentFailed => BookingEvent::BookingPaymentFailed {
            reason: "card_declined".into(),
        },
        S::Refunded => BookingEvent::BookingRefunded {
            payment_id: pay(),
            amount: mxn(6000),
        },
    }
}

#[test]
fn placing_a_booking_totals_guests_times_seat_price() {
    TestFramework::<Booking>::with(())
        .given_no_previous_events()
        .when(place(mxn(2000)))
        .then_expect_events(vec![placed()]);
}

#[test]
fn placing_a_booking_whose_total_overflows_is_refused() {
    given(vec![])
        .when(place(mxn(i64::MAX)))
        .then_expect_error(BookingError::Total(MoneyError::Overflow));
}

#[test]
fn placing_a_booking_twice_is_refused() {
    for status in ALL {
        given(history(status))
            .when(place(mxn(2000)))
            .then_expect_error(BookingError::AlreadyPlaced);
    }
}

#[test]
fn every_command_before_placing_is_refused() {
    let mut commands: Vec<_> = ALL.into_iter().map(command_to).collect();
    commands.push(BookingCommand::RequestPayment { payment_id: pay() });
    for command in commands {
        given(vec![])
            .when(command)
            .then_expect_error(BookingError::NotFound);
    }
}

#[test]
fn marking_seats_held_records_it_once() {
    given(vec![placed()])
        .when(BookingCommand::MarkSeatsHeld)
        .then_expect_events(vec![BookingEvent::BookingSeatsHeld]);
    given(held())
        .when(BookingCommand::MarkSeatsHeld)
        .then_expect_events(vec![]);
}

#[test]
fn rejecting_seats_ends_the_booking() {
    given(vec![placed()])
        .when(command_to(S::SeatsUnavailable))
        .then_expect_events(vec![event_for(S::PendingPayment, S::SeatsUnavailable)]);
}

#[test]
fn rejecting_seats_after_they_were_held_is_refused() {
    given(held())
        .when(command_to(S::SeatsUnavailable))
        .then_expect_error(BookingError::IllegalTransition {
            from: S::PendingPayment,
            to: S::SeatsUnavailable,
        });
}

#[test]
fn rejecting_seats_of_a_confirmed_booking_reports_its_real_status() {
    given(history(S::Confirmed))
        .when(command_to(S::SeatsUnavailable))
        .then_expect_error(BookingError::IllegalTransition {
            from: S::Confirmed,
            to: S::SeatsUnavailable,
        });
}

#[test]
fn requesting_payment_before_seats_are_held_is_refused() {
    given(vec![placed()])
        .when(BookingCommand::RequestPayment { payment_id: pay() })
        .then_expect_error(BookingError::SeatsNotHeld);
}

#[test]
fn requesting_payment_once_seats_are_held_records_it() {
    given(held())
        .when(BookingCommand::RequestPayment { payment_id: pay() })
        .then_expect_events(vec![requested(pay())]);
}

#[test]
fn requesting_the_same_payment_again_records_nothing_but_another_is_refused() {
    given(history(S::PendingPayment))
        .when(BookingCommand::RequestPayment { payment_id: pay() })
        .then_expect_events(vec![]);
    given(history(S::PendingPayment))
        .when(BookingCommand::RequestPayment {
            payment_id: other_pay(),
        })
        .then_expect_error(BookingError::PaymentMismatch(other_pay()));
}

#[test]
fn requesting_payment_after_the_booking_ended_is_refused() {
    given(history(S::Cancelled))
        .when(BookingCommand::RequestPayment { payment_id: pay() })
        .then_expect_error(BookingError::IllegalTransition {
            from: S::Cancelled,
            to: S::PendingPayment,
        });
}

#[test]
fn confirming_with_the_requested_payment_confirms() {
    given(history(S::PendingPayment))
        .when(command_to(S::Confirmed))
        .then_expect_events(vec![BookingEvent::BookingConfirmed { payment_id: pay() }]);
}

#[test]
fn confirming_with_another_payment_is_refused() {
    for from in [S::PendingPayment, S::Confirmed] {
        given(history(from))
            .when(BookingCommand::Confirm {
                payment_id: other_pay(),
            })
            .then_expect_error(BookingError::PaymentMismatch(other_pay()));
    }
}

#[test]
fn confirming_before_a_payment_was_requested_is_refused() {
    given(held())
        .when(command_to(S::Confirmed))
        .then_expect_error(BookingError::PaymentMismatch(pay()));
}

#[test]
fn confirming_before_seats_are_held_reports_seats_not_held() {
    given(vec![placed()])
        .when(command_to(S::Confirmed))
        .then_expect_error(BookingError::SeatsNotHeld);
}

#[test]
fn confirming_a_cancelled_booking_is_refused() {
    given(history(S::Cancelled))
        .when(command_to(S::Confirmed))
        .then_expect_error(BookingError::IllegalTransition {
            from: S::Cancelled,
            to: S::Confirmed,
        });
}

#[test]
fn failing_cancelling_or_expiring_a_pending_booking_ends_it() {
    for to in [S::PaymentFailed, S::Cancelled, S::Expired] {
        given(history(S::PendingPayment))
            .when(command_to(to))
            .then_expect_events(vec![event_for(S::PendingPayment, to)]);
    }
}

#[test]
fn cancelling_a_confirmed_booking_records_where_it_came_from() {
    given(history(S::Confirmed))
        .when(command_to(S::Cancelled))
        .then_expect_events(vec![event_for(S::Confirmed, S::Cancelled)]);
}

#[test]
fn marking_refunded_records_the_refund_of_its_own_payment_only() {
    given(history(S::Confirmed))
        .when(command_to(S::Refunded))
        .then_expect_events(vec![event_for(S::Confirmed, S::Refunded)]);
    given(history(S::Confirmed))
        .when(BookingCommand::MarkRefunded {
            payment_id: other_pay(),
            amount: mxn(6000),
        })
        .then_expect_error(BookingError::PaymentMismatch(other_pay()));
}

#[test]
fn nothing_leaves_seats_unavailable_or_refunded() {
    for from in [S::SeatsUnavailable, S::Refunded] {
        for to in ALL.into_iter().filter(|to| *to != from) {
            let result = given(history(from)).when(command_to(to)).inspect_result();
            assert!(
                matches!(result, Err(BookingError::IllegalTransition { to: t, .. }) if t == to),
                "{from} -> {to}: {result:?}"
            );
        }
    }
}

/// Walks every (from, to) pair through the real commands. `M` = the move is recorded,
/// `S` = already there (nothing recorded), `R` = refused with `illegal_transition`.
/// Columns follow `ALL`: PENDING_PAYMENT (MarkSeatsHeld), CONFIRMED, SEATS_UNAVAILABLE,
/// CANCELLED, EXPIRED, PAYMENT_FAILED, REFUNDED.
#[test]
fn every_status_change_follows_the_transition_table() {
    let table = [
        (S::PendingPayment, "SMMMMMR"),
        (S::Confirmed, "RSRMRRM"),
        (S::SeatsUnavailable, "RRSRRRR"),
        (S::Cancelled, "RRRSRRM"),
        (S::Expired, "RRRRSRM"),
        (S::PaymentFailed, "RRRRRSM"),
        (S::Refunded, "RRRRRRS"),
    ];
    for (from, row) in table {
        for (to, expected) in ALL.into_iter().zip(row.chars()) {
            // Seats can only be rejected before they are held.
            let history = if (from, to) == (S::PendingPayment, S::SeatsUnavailable) {
                vec![placed()]
            } else {
                history(from)
            };
            let result = given(history).when(command_to(to)).inspect_result();
            match expected {
                'M' => assert_eq!(result, Ok(vec![event_for(from, to)]), "{from} -> {to}"),
                'S' => assert_eq!(result, Ok(vec![]), "{from} -> {to}"),
                _ => assert!(
                    matches!(result, Err(BookingError::IllegalTransition { from: f, to: t })
                        if t == to && f == from),
                    "{from} -> {to}: {result:?}"
                ),
            }
        }
    }
}
