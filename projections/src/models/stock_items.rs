//! Stock levels: `available = on_hand - reserved`, the low-stock and depleted flags and time
//! slots.

use chrono::{DateTime, Utc};
use domain::Money;
use domain::stock_item::{StockItem, StockItemEvent, StockKind};
use serde::{Deserialize, Serialize};

use crate::read_model::{Applied, ReadModel};

/// One row of `rm_stock_items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The SKU.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `product` or `time_slot`.
    pub kind: String,
    /// A time slot's start.
    pub starts_at: Option<DateTime<Utc>>,
    /// Units (or seats) held in stock.
    pub on_hand: i64,
    /// Units held by open reservations.
    pub reserved: i64,
    /// `on_hand - reserved`.
    pub available: i64,
    /// At or below this many available units the item is low on stock (0 = never low).
    pub low_stock_threshold: i64,
    /// `low_stock_threshold > 0 && available <= low_stock_threshold`, as the aggregate decides
    /// its low-stock event.
    pub low_stock: bool,
    /// `available == 0`: nothing left to sell.
    pub depleted: bool,
    /// Price of one unit.
    pub unit_price: Money,
    /// Last event folded in.
    pub position: i64,
    /// When that event was recorded.
    pub updated_at: DateTime<Utc>,
}

/// The `stock_items` read model.
pub struct StockLevels;

impl ReadModel for StockLevels {
    const NAME: &'static str = "stock_items";
    const TABLE: &'static str = "rm_stock_items";
    const KEY_TYPE: &'static str = "text";
    type Aggregate = StockItem;
    type Row = StockLevel;

    fn apply(
        row: Option<StockLevel>,
        id: &str,
        event: StockItemEvent,
        applied: Applied,
    ) -> Result<Option<StockLevel>, String> {
        let mut row = match (row, event) {
            (
                _,
                StockItemEvent::StockItemRegistered {
                    name,
                    kind,
                    on_hand,
                    low_stock_threshold,
                    unit_price,
                    ..
                },
            ) => {
                let (kind, starts_at) = match kind {
                    StockKind::Product => ("product", None),
                    StockKind::TimeSlot { starts_at } => ("time_slot", Some(starts_at)),
                };
                StockLevel {
                    id: id.to_owned(),
                    name,
                    kind: kind.to_owned(),
                    starts_at,
                    on_hand: on_hand.into(),
                    reserved: 0,
                    available: 0,
                    low_stock_threshold: low_stock_threshold.into(),
                    low_stock: false,
                    depleted: false,
                    unit_price,
                    position: 0,
                    updated_at: applied.recorded_at,
                }
            }
            (None, _) => return Err(super::missing(id)),
            (Some(mut row), event) => {
                match event {
                    StockItemEvent::StockRestocked { on_hand, .. }
                    | StockItemEvent::StockAdjusted { on_hand, .. }
                    | StockItemEvent::ReservationReturned { on_hand, .. } => {
                        row.on_hand = on_hand.into();
                    }
                    StockItemEvent::StockReserved { quantity, .. } => {
                        row.reserved += i64::from(quantity);
                    }
                    StockItemEvent::ReservationCommitted {
                        quantity, on_hand, ..
                    } => {
                        row.reserved -= i64::from(quantity);
                        row.on_hand = on_hand.into();
                    }
                    StockItemEvent::ReservationReleased { quantity, .. } => {
                        row.reserved -= i64::from(quantity);
                    }
                    StockItemEvent::LowStockReached { .. }
                    | StockItemEvent::StockDepleted
                    | StockItemEvent::StockItemRegistered { .. } => {}
                }
                row
            }
        };
        row.available = row.on_hand - row.reserved;
        // Threshold 0 means "never low" in the aggregate (`threshold_events`); an item with
        // nothing available is `depleted` instead.
        row.low_stock = row.low_stock_threshold > 0 && row.available <= row.low_stock_threshold;
        row.depleted = row.available == 0;
        row.position = applied.position;
        row.updated_at = applied.recorded_at;
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::stock_item::ReleaseReason;
    use domain::{Currency, OrderId, Owner, ReservationId, Sku};
    use uuid::Uuid;

    const SKU: &str = "MUG-001";

    fn applied(position: i64) -> Applied {
        Applied {
            position,
            recorded_at: DateTime::from_timestamp(1_800_000_000 + position, 0).unwrap(),
        }
    }

    fn registered(on_hand: u32, low_stock_threshold: u32) -> StockItemEvent {
        StockItemEvent::StockItemRegistered {
            sku: Sku::parse(SKU).unwrap(),
            name: "Clay mug".into(),
            kind: StockKind::Product,
            on_hand,
            low_stock_threshold,
            unit_price: Money::new(1500, Currency::parse("MXN").unwrap()).unwrap(),
        }
    }

    fn rid() -> ReservationId {
        ReservationId(Uuid::from_u128(1))
    }

    fn reserved(quantity: u32) -> StockItemEvent {
        StockItemEvent::StockReserved {
            reservation_id: rid(),
            quantity,
            owner: Owner::Order(OrderId(Uuid::from_u128(42))),
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        }
    }

    /// Folds `events` from no row, as the projector does.
    fn fold(events: Vec<StockItemEvent>) -> StockLevel {
        let mut row = None;
        for (position, event) in (1..).zip(events) {
            row = StockLevels::apply(row, SKU, event, applied(position)).unwrap();
        }
        row.unwrap()
    }

    #[test]
    fn a_returned_reservation_raises_on_hand_and_availability() {
        let row = fold(vec![
            registered(5, 1),
            reserved(5),
            StockItemEvent::ReservationCommitted {
                reservation_id: rid(),
                quantity: 5,
                on_hand: 0,
            },
            StockItemEvent::ReservationReturned {
                reservation_id: rid(),
                quantity: 5,
                on_hand: 5,
            },
        ]);

        assert_eq!((row.on_hand, row.reserved, row.available), (5, 0, 5));
        assert!(!row.low_stock && !row.depleted, "{row:?}");
        assert_eq!(row.position, 4);
    }

    #[test]
    fn reaching_the_threshold_is_low_stock_and_reaching_zero_is_depleted() {
        let low = fold(vec![registered(5, 2), reserved(3)]);
        let empty = fold(vec![registered(5, 2), reserved(5)]);
        let released = fold(vec![
            registered(5, 2),
            reserved(5),
            StockItemEvent::ReservationReleased {
                reservation_id: rid(),
                quantity: 5,
                reason: ReleaseReason::Expired,
            },
        ]);

        assert_eq!(
            (low.available, low.low_stock, low.depleted),
            (2, true, false)
        );
        assert_eq!(
            (empty.available, empty.low_stock, empty.depleted),
            (0, true, true)
        );
        assert_eq!(
            (released.available, released.low_stock, released.depleted),
            (5, false, false)
        );
    }

    #[test]
    fn a_zero_threshold_is_never_low_stock_even_when_depleted() {
        // As the aggregate's `threshold_events`: threshold 0 means "no low-stock alert".
        let registered_empty = fold(vec![registered(0, 0)]);
        let sold_out = fold(vec![registered(3, 0), reserved(3)]);

        for row in [registered_empty, sold_out] {
            assert_eq!(
                (row.available, row.low_stock, row.depleted),
                (0, false, true)
            );
        }
    }
}
