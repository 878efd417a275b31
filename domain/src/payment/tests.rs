use super::*;
use crate::{Currency, Money, OrderId, Owner};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use PaymentStatus as S;

fn owner() -> Owner {
    Owner::Order(OrderId(Uuid::from_u128(42)))
}
fn money(amount: i64, code: &str) -> Money {
    Money::new(amount, Currency::parse(code).unwrap()).unwrap()
}
fn mxn(amount: i64) -> Money {
    money(amount, "MXN")
}
fn create() -> PaymentCommand {
    PaymentCommand::Create {
        owner: owner(),
        amount: mxn(10_000),
        provider: "simulated".into(),
        provider_intent_id: "pi_1".into(),
        client_secret: Some("pi_1_secret".into()),
    }
}
fn created() -> PaymentEvent {
    PaymentEvent::PaymentCreated {
        owner: owner(),
        amount: mxn(10_000),
        provider: "simulated".into(),
        provider_intent_id: "pi_1".into(),
        client_secret: Some("pi_1_secret".into()),
    }
}
fn refund(event: Option<&str>, refund_id: &str, amount: Money) -> PaymentCommand {
    PaymentCommand::Refund {
        provider_event_id: event.map(str::to_owned),
        refund_id: refund_id.into(),
        amount,
    }
}
fn refunded(event: Option<&str>, refund_id: &str, amount: i64, total: i64) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        provider_event_id: event.map(str::to_owned),
        refund_id: refund_id.into(),
        amount: mxn(amount),
        refunded_total: mxn(total),
    }
}
fn given(events: Vec<PaymentEvent>) -> AggregateTestExecutor<Payment> {
    TestFramework::<Payment>::with(()).given(events)
}

/// The provider-driven command towards `to`, carrying provider event `evt`.
fn command_to(to: PaymentStatus, evt: &str) -> PaymentCommand {
    let provider_event_id = evt.to_owned();
    match to {
        S::Created => create(),
        S::RequiresAction => PaymentCommand::RequireAction { provider_event_id },
        S::Succeeded => PaymentCommand::Succeed { provider_event_id },
        S::Failed => PaymentCommand::Fail {
            provider_event_id,
            reason: "card_declined".into(),
        },
        S::Canceled => PaymentCommand::Cancel {
            provider_event_id: Some(provider_event_id),
            reason: "abandoned".into(),
        },
        S::Refunded => refund(Some(evt), &format!("re_{evt}"), mxn(1000)),
    }
}

/// The event `command_to(to, evt)` records when it is allowed (refunds of 1000 on top of
/// `already` refunded).
fn event_to(to: PaymentStatus, evt: &str, already: i64) -> PaymentEvent {
    let provider_event_id = evt.to_owned();
    match to {
        S::Created => created(),
        S::RequiresAction => PaymentEvent::PaymentRequiresAction { provider_event_id },
        S::Succeeded => PaymentEvent::PaymentSucceeded { provider_event_id },
        S::Failed => PaymentEvent::PaymentFailed {
            provider_event_id,
            reason: "card_declined".into(),
        },
        S::Canceled => PaymentEvent::PaymentCanceled {
            provider_event_id: Some(provider_event_id),
            reason: "abandoned".into(),
        },
        S::Refunded => refunded(Some(evt), &format!("re_{evt}"), 1000, already + 1000),
    }
}

/// A payment brought to `status` by provider events `evt_0`, `evt_1`, ...; a refunded one has
/// had 3000 of its 10000 returned.
fn history(status: PaymentStatus) -> Vec<PaymentEvent> {
    match status {
        S::Created => vec![created()],
        S::Refunded => [
            history(S::Succeeded),
            vec![refunded(Some("evt_1"), "re_1", 3000, 3000)],
        ]
        .concat(),
        to => vec![created(), event_to(to, "evt_0", 0)],
    }
}

#[test]
fn creating_a_payment_records_the_intent() {
    TestFramework::<Payment>::with(())
        .given_no_previous_events()
        .when(create())
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_a_payment_twice_is_refused() {
    given(vec![created()])
        .when(create())
        .then_expect_error(PaymentError::AlreadyCreated);
}

#[test]
fn every_command_before_creation_is_refused() {
    for to in [
        S::RequiresAction,
        S::Succeeded,
        S::Failed,
        S::Canceled,
        S::Refunded,
    ] {
        given(vec![])
            .when(command_to(to, "evt_9"))
            .then_expect_error(PaymentError::NotFound);
    }
}

#[test]
fn provider_events_move_a_new_payment() {
    for to in [S::RequiresAction, S::Succeeded, S::Failed, S::Canceled] {
        given(history(S::Created))
            .when(command_to(to, "evt_9"))
            .then_expect_events(vec![event_to(to, "evt_9", 0)]);
    }
}

#[test]
fn cancelling_without_a_provider_event_is_recorded_once() {
    let cancel = || PaymentCommand::Cancel {
        provider_event_id: None,
        reason: "expired".into(),
    };
    let canceled = PaymentEvent::PaymentCanceled {
        provider_event_id: None,
        reason: "expired".into(),
    };
    given(history(S::Created))
        .when(cancel())
        .then_expect_events(vec![canceled.clone()]);
    given(vec![created(), canceled])
        .when(cancel())
        .then_expect_events(vec![]);
}

#[test]
fn a_webhook_delivered_twice_changes_nothing() {
    for to in [S::RequiresAction, S::Succeeded, S::Failed, S::Canceled] {
        given(history(to))
            .when(command_to(to, "evt_0"))
            .then_expect_events(vec![]);
    }
    given(history(S::Refunded))
        .when(command_to(S::Refunded, "evt_1"))
        .then_expect_events(vec![]);
}

#[test]
fn a_late_duplicate_of_an_earlier_webhook_changes_nothing() {
    // evt_0 (failed) is redelivered after the retry succeeded: not an illegal transition.
    let history = vec![
        created(),
        event_to(S::Failed, "evt_0", 0),
        event_to(S::Succeeded, "evt_1", 0),
    ];
    given(history)
        .when(command_to(S::Failed, "evt_0"))
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_attempt_may_still_succeed() {
    given(history(S::Failed))
        .when(command_to(S::Succeeded, "evt_1"))
        .then_expect_events(vec![event_to(S::Succeeded, "evt_1", 0)]);
}

#[test]
fn a_success_reported_after_a_cancel_is_recorded_so_it_can_be_refunded() {
    given(history(S::Canceled))
        .when(command_to(S::Succeeded, "evt_1"))
        .then_expect_events(vec![PaymentEvent::PaymentSucceeded {
            provider_event_id: "evt_1".into(),
        }]);
}

#[test]
fn a_partial_then_a_full_refund_accumulate_the_refunded_total() {
    given(history(S::Succeeded))
        .when(refund(None, "re_a", mxn(3000)))
        .then_expect_events(vec![refunded(None, "re_a", 3000, 3000)]);
    given(history(S::Succeeded))
        .and(vec![refunded(None, "re_a", 3000, 3000)])
        .when(refund(Some("evt_2"), "re_b", mxn(7000)))
        .then_expect_events(vec![refunded(Some("evt_2"), "re_b", 7000, 10_000)]);
}

#[test]
fn refunding_more_than_remains_is_refused() {
    given(history(S::Refunded))
        .when(refund(None, "re_b", mxn(7001)))
        .then_expect_error(PaymentError::RefundExceedsPayment {
            requested: mxn(7001),
            refundable: mxn(7000),
        });
    given(history(S::Succeeded))
        .and(vec![refunded(None, "re_a", 10_000, 10_000)])
        .when(refund(None, "re_b", mxn(1)))
        .then_expect_error(PaymentError::RefundExceedsPayment {
            requested: mxn(1),
            refundable: mxn(0),
        });
}

#[test]
fn refunding_in_another_currency_is_refused() {
    given(history(S::Succeeded))
        .when(refund(None, "re_a", money(100, "USD")))
        .then_expect_error(PaymentError::RefundExceedsPayment {
            requested: money(100, "USD"),
            refundable: mxn(10_000),
        });
}

#[test]
fn refunding_nothing_is_refused() {
    given(history(S::Succeeded))
        .when(refund(None, "re_a", mxn(0)))
        .then_expect_error(PaymentError::RefundExceedsPayment {
            requested: mxn(0),
            refundable: mxn(10_000),
        });
}

#[test]
fn refunding_before_success_is_refused() {
    for from in [S::Created, S::RequiresAction, S::Failed, S::Canceled] {
        given(history(from))
            .when(refund(None, "re_a", mxn(100)))
            .then_expect_error(PaymentError::IllegalTransition {
                from,
                to: S::Refunded,
            });
    }
}

#[test]
fn the_same_refund_id_twice_changes_nothing() {
    // Once issued by us without a provider event, then reported again by the webhook.
    given(history(S::Succeeded))
        .and(vec![refunded(None, "re_a", 3000, 3000)])
        .when(refund(Some("evt_5"), "re_a", mxn(3000)))
        .then_expect_events(vec![]);
}

/// Walks every (from, to) pair through the real commands with a fresh provider event id.
/// `M` = recorded, `S` = already there (nothing recorded), `R` = `illegal_transition`.
/// Columns: REQUIRES_ACTION, SUCCEEDED, FAILED, CANCELED, REFUNDED (a further 1000 refund).
#[test]
fn every_status_change_follows_the_transition_table() {
    let table = [
        (S::Created, "MMMMR"),
        (S::RequiresAction, "SMMMR"),
        (S::Succeeded, "RSRRM"),
        (S::Failed, "MMSMR"),
        (S::Canceled, "RMRSR"),
        (S::Refunded, "RRRRM"),
    ];
    let targets = [
        S::RequiresAction,
        S::Succeeded,
        S::Failed,
        S::Canceled,
        S::Refunded,
    ];
    for (from, row) in table {
        let already = if from == S::Refunded { 3000 } else { 0 };
        for (to, expected) in targets.into_iter().zip(row.chars()) {
            let result = given(history(from))
                .when(command_to(to, "evt_9"))
                .inspect_result();
            let expected = match expected {
                'M' => Ok(vec![event_to(to, "evt_9", already)]),
                'S' => Ok(vec![]),
                _ => Err(PaymentError::IllegalTransition { from, to }),
            };
            assert_eq!(result, expected, "{from} -> {to}");
        }
    }
}
