//! Stock levels: `available = on_hand - reserved`, the low-stock flag and time slots.

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
    /// At or below this many available units the item is low on stock.
    pub low_stock_threshold: i64,
    /// `available <= low_stock_threshold`.
    pub low_stock: bool,
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
        row.low_stock = row.available <= row.low_stock_threshold;
        row.position = applied.position;
        row.updated_at = applied.recorded_at;
        Ok(Some(row))
    }
}
