use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Money, Owner, Quantity, ReservationId, Sku};

/// Whether an item is a product's units or an experience's time slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StockKind {
    /// Units of a product.
    Product,
    /// Seats of a time slot starting at `starts_at`.
    TimeSlot {
        /// When the experience starts.
        starts_at: DateTime<Utc>,
    },
}

/// Why a reservation was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The customer cancelled.
    Cancelled,
    /// The hold outlived its `expires_at`.
    Expired,
    /// The payment failed.
    PaymentFailed,
    /// A saga undid a partial reservation.
    Compensation,
}

/// What can be asked of a StockItem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockItemCommand {
    /// Creates the item with its initial count.
    Register {
        /// The item's id.
        sku: Sku,
        /// Display name.
        name: String,
        /// Product or time slot.
        kind: StockKind,
        /// Initial `on_hand` (seats for a slot).
        quantity: u32,
        /// Availability at or below which a low-stock event is emitted (0 = never).
        low_stock_threshold: u32,
        /// Price of one unit or seat.
        unit_price: Money,
    },
    /// Adds units.
    Restock {
        /// Units added.
        quantity: Quantity,
    },
    /// Corrects `on_hand` by a signed delta after a count, damage or loss.
    Adjust {
        /// Units added (positive) or removed (negative).
        delta: i64,
        /// Free-text reason kept in the event for the audit trail.
        reason: String,
    },
    /// Holds units for an owner until committed, released or expired.
    Reserve {
        /// Deterministic id (see [`ReservationId::for_owner`]).
        reservation_id: ReservationId,
        /// Units held.
        quantity: Quantity,
        /// The order or booking holding them.
        owner: Owner,
        /// When the hold lapses if not committed.
        expires_at: DateTime<Utc>,
    },
    /// Turns a hold into a sale.
    CommitReservation {
        /// The hold.
        reservation_id: ReservationId,
    },
    /// Puts a sale's units back on hand after it was refunded.
    ReturnReservation {
        /// The committed hold.
        reservation_id: ReservationId,
    },
    /// Returns held units to availability.
    ReleaseReservation {
        /// The hold.
        reservation_id: ReservationId,
        /// Why.
        reason: ReleaseReason,
    },
}

impl StockItemCommand {
    /// The variant's name (`"Register"`): a bounded label for metrics and logs that
    /// does not carry the command's data.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "Register",
            Self::Restock { .. } => "Restock",
            Self::Adjust { .. } => "Adjust",
            Self::Reserve { .. } => "Reserve",
            Self::CommitReservation { .. } => "CommitReservation",
            Self::ReturnReservation { .. } => "ReturnReservation",
            Self::ReleaseReservation { .. } => "ReleaseReservation",
        }
    }
}
