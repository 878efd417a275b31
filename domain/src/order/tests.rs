use super::*;
use crate::{Currency, CustomerId, Money, MoneyError, PaymentId, Quantity, Sku};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use OrderStatus as S;

fn customer() -> CustomerId {
    CustomerId(Uuid::from_u128(7))
}
fn pay() -> PaymentId {
    PaymentId(Uuid::from_u128(100))
}
fn other_pay() -> PaymentId {
    PaymentId(Uuid::from_u128(200))
}
fn money(amount: i64, code: &str) -> Money {
    Money::new(amount, Currency::parse(code).unwrap()).unwrap()
}
fn mxn(amount: i64) -> Money {
    money(amount, "MXN")
}
fn item(sku: &str, quantity: i64, unit_price: Money) -> OrderItem {
    OrderItem {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price,
    }
}
fn items() -> Vec<OrderItem> {
    vec![item("MUG-001", 2, mxn(1500)), item("CUP-002", 3, mxn(250))]
}
fn place(items: Vec<OrderItem>) -> OrderCommand {
    OrderCommand::Place {
        customer_id: customer(),
        items,
        expires_at: deadline(),
    }
}
fn deadline() -> chrono::DateTime<chrono::Utc> {
    "2030-01-01T00:15:00Z".parse().unwrap()
}
fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer_id: customer(),
        items: items(),
        total: mxn(3750),
        expires_at: Some(deadline()),
    }
}
fn given(events: Vec<OrderEvent>) -> AggregateTestExecutor<Order> {
    TestFramework::<Order>::with(()).given(events)
}

/// Every status an order can be in, in the order of the expectation table below.
const ALL: [OrderStatus; 9] = [
    S::Started,
    S::StockReserved,
    S::PaymentPending,
    S::Completed,
    S::StockFailed,
    S::PaymentFailed,
    S::Cancelled,
    S::Expired,
    S::Refunded,
];

/// The events that bring a fresh order to `status`, through a requested payment wherever the
/// path allows one (so that a later refund names the order's own payment).
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    let pending = || {
        vec![
            placed(),
            OrderEvent::OrderStockReserved,
            OrderEvent::OrderPaymentRequested { payment_id: pay() },
        ]
    };
    let completed = || {
        [
            pending(),
            vec![OrderEvent::OrderCompleted { payment_id: pay() }],
        ]
        .concat()
    };
    let then = |mut events: Vec<OrderEvent>, last: OrderEvent| {
        events.push(last);
        events
    };
    match status {
        S::Started => vec![placed()],
        S::StockReserved => vec![placed(), OrderEvent::OrderStockReserved],
        S::PaymentPending => pending(),
        S::Completed => completed(),
        S::StockFailed => then(vec![placed()], stock_failed()),
        S::PaymentFailed => then(pending(), payment_failed()),
        S::Cancelled => then(pending(), cancelled(S::PaymentPending)),
        S::Expired => then(
            pending(),
            OrderEvent::OrderExpired {
                from: S::PaymentPending,
            },
        ),
        S::Refunded => then(completed(), refunded(pay())),
    }
}
fn stock_failed() -> OrderEvent {
    OrderEvent::OrderStockFailed {
        sku: Sku::parse("MUG-001").unwrap(),
        reason: "insufficient_stock".into(),
    }
}
fn payment_failed() -> OrderEvent {
    OrderEvent::OrderPaymentFailed {
        reason: "card_declined".into(),
    }
}
fn cancelled(from: OrderStatus) -> OrderEvent {
    OrderEvent::OrderCancelled {
        reason: "changed my mind".into(),
        from,
        by: Canceller::Customer,
    }
}
fn refunded(payment_id: PaymentId) -> OrderEvent {
    OrderEvent::OrderRefunded {
        payment_id,
        amount: mxn(3750),
    }
}

/// The command that asks for a move to `to` (`STARTED` has none: it is only entered by Place).
fn command_to(to: OrderStatus) -> OrderCommand {
    match to {
        S::Started => unreachable!("no command moves an order back to STARTED"),
        S::StockReserved => OrderCommand::ConfirmStockReserved,
        S::StockFailed => OrderCommand::FailStock {
            sku: Sku::parse("MUG-001").unwrap(),
            reason: "insufficient_stock".into(),
        },
        S::PaymentPending => OrderCommand::RequestPayment { payment_id: pay() },
        S::Completed => OrderCommand::Complete { payment_id: pay() },
        S::PaymentFailed => OrderCommand::FailPayment {
            reason: "card_declined".into(),
        },
        S::Cancelled => OrderCommand::Cancel {
            reason: "changed my mind".into(),
            by: Canceller::Customer,
        },
        S::Expired => OrderCommand::Expire,
        S::Refunded => OrderCommand::MarkRefunded {
            payment_id: pay(),
            amount: mxn(3750),
        },
    }
}

/// The event a legal move `from → to` records.
fn event_for(from: OrderStatus, to: OrderStatus) -> OrderEvent {
    match to {
        S::StockReserved => OrderEvent::OrderStockReserved,
        S::StockFailed => stock_failed(),
        S::PaymentPending => OrderEvent::OrderPaymentRequested { payment_id: pay() },
        S::Completed => OrderEvent::OrderCompleted { payment_id: pay() },
        S::PaymentFailed => payment_failed(),
        S::Cancelled => cancelled(from),
        S::Expired => OrderEvent::OrderExpired { from },
        S::Refunded => refunded(pay()),
        S::Started => unreachable!("no command moves an order back to STARTED"),
    }
}

#[test]
fn placing_an_order_records_its_items_and_total() {
    TestFramework::<Order>::with(())
        .given_no_previous_events()
        .when(place(items()))
        .then_expect_events(vec![placed()]);
}

#[test]
fn placing_an_order_without_items_is_refused() {
    given(vec![])
        .when(place(vec![]))
        .then_expect_error(OrderError::NoItems);
}

#[test]
fn placing_an_order_with_a_sku_twice_is_refused() {
    let twice = vec![item("mug-001", 1, mxn(10)), item("MUG-001", 2, mxn(10))];
    given(vec![])
        .when(place(twice))
        .then_expect_error(OrderError::DuplicateSku(Sku::parse("MUG-001").unwrap()));
}

#[test]
fn placing_an_order_in_two_currencies_is_refused() {
    let mixed = vec![item("A", 1, mxn(10)), item("B", 1, money(10, "USD"))];
    given(vec![])
        .when(place(mixed))
        .then_expect_error(OrderError::Total(MoneyError::CurrencyMismatch(
            Currency::parse("MXN").unwrap(),
            Currency::parse("USD").unwrap(),
        )));
}

#[test]
fn placing_an_order_whose_total_overflows_is_refused() {
    let huge = vec![item("A", 2, mxn(i64::MAX))];
    given(vec![])
        .when(place(huge))
        .then_expect_error(OrderError::Total(MoneyError::Overflow));
}

#[test]
fn placing_an_order_twice_is_refused() {
    for status in ALL {
        given(history(status))
            .when(place(items()))
            .then_expect_error(OrderError::AlreadyPlaced);
    }
}

#[test]
fn every_command_before_placing_is_refused() {
    for to in &ALL[1..] {
        given(vec![])
            .when(command_to(*to))
            .then_expect_error(OrderError::NotFound);
    }
}

/// Walks every (from, to) pair through the real commands. `M` = the move is recorded,
/// `S` = already there (nothing recorded), `R` = refused with `illegal_transition`.
/// Columns: STOCK_RESERVED, STOCK_FAILED, PAYMENT_PENDING, COMPLETED, PAYMENT_FAILED,
/// CANCELLED, EXPIRED, REFUNDED (the order of `ALL` without STARTED).
#[test]
fn every_status_change_follows_the_transition_table() {
    let table = [
        (S::Started, "MMRRRMMR"),
        (S::StockReserved, "SRMRMMMR"),
        (S::PaymentPending, "RRSMMMMR"),
        (S::Completed, "RRRSRMRM"),
        (S::StockFailed, "RSRRRRRR"),
        (S::PaymentFailed, "RRRRSRRM"),
        (S::Cancelled, "RRRRRSRM"),
        (S::Expired, "RRRRRRSM"),
        (S::Refunded, "RRRRRRRS"),
    ];
    let targets = [
        S::StockReserved,
        S::StockFailed,
        S::PaymentPending,
        S::Completed,
        S::PaymentFailed,
        S::Cancelled,
        S::Expired,
        S::Refunded,
    ];
    for (from, row) in table {
        for (to, expected) in targets.into_iter().zip(row.chars()) {
            let result = given(history(from)).when(command_to(to)).inspect_result();
            let expected = match expected {
                'M' => Ok(vec![event_for(from, to)]),
                'S' => Ok(vec![]),
                _ => Err(OrderError::IllegalTransition { from, to }),
            };
            assert_eq!(result, expected, "{from} -> {to}");
        }
    }
}

#[test]
fn an_order_cannot_complete_before_its_stock_is_reserved_and_its_payment_requested() {
    for from in [S::Started, S::StockReserved] {
        given(history(from))
            .when(OrderCommand::Complete { payment_id: pay() })
            .then_expect_error(OrderError::IllegalTransition {
                from,
                to: S::Completed,
            });
    }
}

#[test]
fn completing_with_the_requested_payment_completes_the_order() {
    given(history(S::PaymentPending))
        .when(OrderCommand::Complete { payment_id: pay() })
        .then_expect_events(vec![OrderEvent::OrderCompleted { payment_id: pay() }]);
}

#[test]
fn completing_with_another_payment_is_refused() {
    for from in [S::PaymentPending, S::Completed] {
        given(history(from))
            .when(OrderCommand::Complete {
                payment_id: other_pay(),
            })
            .then_expect_error(OrderError::PaymentMismatch(other_pay()));
    }
}

#[test]
fn requesting_a_payment_again_records_nothing_but_another_payment_is_refused() {
    given(history(S::PaymentPending))
        .when(OrderCommand::RequestPayment { payment_id: pay() })
        .then_expect_events(vec![]);
    given(history(S::PaymentPending))
        .when(OrderCommand::RequestPayment {
            payment_id: other_pay(),
        })
        .then_expect_error(OrderError::PaymentMismatch(other_pay()));
}

#[test]
fn failing_stock_after_it_was_reserved_is_refused() {
    given(history(S::StockReserved))
        .when(command_to(S::StockFailed))
        .then_expect_error(OrderError::IllegalTransition {
            from: S::StockReserved,
            to: S::StockFailed,
        });
}

#[test]
fn marking_an_order_refunded_before_any_payment_is_refused() {
    given(history(S::Started))
        .when(command_to(S::Refunded))
        .then_expect_error(OrderError::IllegalTransition {
            from: S::Started,
            to: S::Refunded,
        });
}

#[test]
fn marking_an_order_refunded_with_another_payment_is_refused() {
    given(history(S::Completed))
        .when(OrderCommand::MarkRefunded {
            payment_id: other_pay(),
            amount: mxn(3750),
        })
        .then_expect_error(OrderError::PaymentMismatch(other_pay()));
}

#[test]
fn an_order_cancelled_before_payment_cannot_be_marked_refunded() {
    given(vec![placed(), cancelled(S::Started)])
        .when(command_to(S::Refunded))
        .then_expect_error(OrderError::PaymentMismatch(pay()));
}

#[test]
fn cancelling_and_expiring_record_the_status_they_left() {
    for from in [S::Started, S::StockReserved, S::PaymentPending] {
        given(history(from))
            .when(command_to(S::Cancelled))
            .then_expect_events(vec![cancelled(from)]);
        given(history(from))
            .when(OrderCommand::Expire)
            .then_expect_events(vec![OrderEvent::OrderExpired { from }]);
    }
}

#[test]
fn nothing_leaves_stock_failed_or_refunded() {
    for from in [S::StockFailed, S::Refunded] {
        for to in ALL[1..].iter().copied().filter(|to| *to != from) {
            given(history(from))
                .when(command_to(to))
                .then_expect_error(OrderError::IllegalTransition { from, to });
        }
    }
}
