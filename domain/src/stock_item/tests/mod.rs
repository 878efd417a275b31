//! Given/when/then tests of the StockItem's rules, one per rule.

use super::*;
use crate::{Currency, Money, OrderId, Owner, Quantity, ReservationId, Sku};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

pub(super) fn sku() -> Sku {
    Sku::parse("MUG-001").unwrap()
}
pub(super) fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}
pub(super) fn qty(n: u32) -> Quantity {
    Quantity::new(i64::from(n)).unwrap()
}
pub(super) fn rid(n: u128) -> ReservationId {
    ReservationId(Uuid::from_u128(n))
}
pub(super) fn owner() -> Owner {
    Owner::Order(OrderId(Uuid::from_u128(42)))
}
pub(super) fn expires() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}
pub(super) fn given(events: Vec<StockItemEvent>) -> AggregateTestExecutor<StockItem> {
    TestFramework::<StockItem>::with(()).given(events)
}

pub(super) fn register(
    quantity: u32,
    low_stock_threshold: u32,
    kind: StockKind,
) -> StockItemCommand {
    StockItemCommand::Register {
        sku: sku(),
        name: "Clay mug".into(),
        kind,
        quantity,
        low_stock_threshold,
        unit_price: mxn(1500),
    }
}
pub(super) fn registered_with_threshold(on_hand: u32, low_stock_threshold: u32) -> StockItemEvent {
    StockItemEvent::StockItemRegistered {
        sku: sku(),
        name: "Clay mug".into(),
        kind: StockKind::Product,
        on_hand,
        low_stock_threshold,
        unit_price: mxn(1500),
    }
}
pub(super) fn registered(on_hand: u32) -> StockItemEvent {
    registered_with_threshold(on_hand, 0)
}
pub(super) fn reserve(id: u128, quantity: u32) -> StockItemCommand {
    StockItemCommand::Reserve {
        reservation_id: rid(id),
        quantity: qty(quantity),
        owner: owner(),
        expires_at: expires(),
    }
}
pub(super) fn reserved(id: u128, quantity: u32) -> StockItemEvent {
    StockItemEvent::StockReserved {
        reservation_id: rid(id),
        quantity,
        owner: owner(),
        expires_at: expires(),
    }
}
pub(super) fn commit(id: u128) -> StockItemCommand {
    StockItemCommand::CommitReservation {
        reservation_id: rid(id),
    }
}
pub(super) fn committed(id: u128, quantity: u32, on_hand: u32) -> StockItemEvent {
    StockItemEvent::ReservationCommitted {
        reservation_id: rid(id),
        quantity,
        on_hand,
    }
}
pub(super) fn release(id: u128) -> StockItemCommand {
    StockItemCommand::ReleaseReservation {
        reservation_id: rid(id),
        reason: ReleaseReason::Cancelled,
    }
}
pub(super) fn released(id: u128, quantity: u32) -> StockItemEvent {
    StockItemEvent::ReservationReleased {
        reservation_id: rid(id),
        quantity,
        reason: ReleaseReason::Cancelled,
    }
}
pub(super) fn adjust(delta: i64) -> StockItemCommand {
    StockItemCommand::Adjust {
        delta,
        reason: "count".into(),
    }
}
pub(super) fn adjusted(delta: i64, on_hand: u32) -> StockItemEvent {
    StockItemEvent::StockAdjusted {
        delta,
        on_hand,
        reason: "count".into(),
    }
}
pub(super) fn low(available: u32, threshold: u32) -> StockItemEvent {
    StockItemEvent::LowStockReached {
        available,
        threshold,
    }
}

mod holds;
mod memory;
mod stock;
