use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::command::{ReleaseReason, StockKind};
use crate::{Money, Owner, ReservationId, Sku};

/// Facts recorded about a StockItem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockItemEvent {
    /// The item exists with an initial count.
    StockItemRegistered {
        /// The item's id.
        sku: Sku,
        /// Display name.
        name: String,
        /// Product or time slot.
        kind: StockKind,
        /// Initial count.
        on_hand: u32,
        /// Low-stock threshold.
        low_stock_threshold: u32,
        /// Price of one unit.
        unit_price: Money,
    },
    /// Units were added.
    StockRestocked {
        /// Units added.
        quantity: u32,
        /// `on_hand` afterwards.
        on_hand: u32,
    },
    /// `on_hand` was corrected.
    StockAdjusted {
        /// Signed change.
        delta: i64,
        /// `on_hand` afterwards.
        on_hand: u32,
        /// Why.
        reason: String,
    },
    /// Units are held for an owner.
    StockReserved {
        /// The hold.
        reservation_id: ReservationId,
        /// Units held.
        quantity: u32,
        /// Who holds them.
        owner: Owner,
        /// When the hold lapses.
        expires_at: DateTime<Utc>,
    },
    /// A hold became a sale; `on_hand` dropped by `quantity`.
    ReservationCommitted {
        /// The hold.
        reservation_id: ReservationId,
        /// Units sold.
        quantity: u32,
        /// `on_hand` afterwards.
        on_hand: u32,
    },
    /// A hold was returned to availability.
    ReservationReleased {
        /// The hold.
        reservation_id: ReservationId,
        /// Units returned.
        quantity: u32,
        /// Why.
        reason: ReleaseReason,
    },
    /// A sale was undone; its units are on hand again.
    ReservationReturned {
        /// The committed hold.
        reservation_id: ReservationId,
        /// Units returned.
        quantity: u32,
        /// `on_hand` afterwards.
        on_hand: u32,
    },
    /// Availability crossed down to the low-stock threshold.
    LowStockReached {
        /// Availability afterwards.
        available: u32,
        /// The threshold.
        threshold: u32,
    },
    /// Availability reached zero.
    StockDepleted,
}

impl DomainEvent for StockItemEvent {
    fn event_type(&self) -> String {
        match self {
            Self::StockItemRegistered { .. } => "StockItemRegistered",
            Self::StockRestocked { .. } => "StockRestocked",
            Self::StockAdjusted { .. } => "StockAdjusted",
            Self::StockReserved { .. } => "StockReserved",
            Self::ReservationCommitted { .. } => "ReservationCommitted",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::ReservationReturned { .. } => "ReservationReturned",
            Self::LowStockReached { .. } => "LowStockReached",
            Self::StockDepleted => "StockDepleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
