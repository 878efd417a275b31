use crate::{DomainError, RejectionKind, ReservationId};

/// Why a StockItem refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockItemError {
    /// No item with this SKU has been registered.
    #[error("stock item is not registered")]
    NotRegistered,
    /// The SKU is taken.
    #[error("stock item is already registered")]
    AlreadyRegistered,
    /// Not enough units are available for the hold.
    #[error("insufficient stock: {requested} requested, {available} available")]
    InsufficientStock {
        /// Units asked for.
        requested: u32,
        /// Units available (on hand minus held).
        available: u32,
    },
    /// An adjustment would leave fewer units than are held, or a negative count.
    #[error("adjustment of {delta} would leave {on_hand} on hand with {reserved} reserved")]
    AdjustmentBelowReserved {
        /// The refused change.
        delta: i64,
        /// What `on_hand` would have become.
        on_hand: i64,
        /// Units currently held.
        reserved: u32,
    },
    /// `on_hand` would exceed what the store can count.
    #[error("on-hand count would overflow")]
    CountOverflow,
    /// Commit of a reservation this item never held.
    #[error("reservation {0} not found")]
    ReservationNotFound(ReservationId),
    /// Commit of a reservation that was already released.
    #[error("reservation {0} was already released")]
    ReservationReleased(ReservationId),
    /// Return of a reservation that is still only held (release it instead).
    #[error("reservation {0} is held, not sold")]
    ReservationNotCommitted(ReservationId),
    /// Release of a reservation that was already sold.
    #[error("reservation {0} was already committed")]
    ReservationCommitted(ReservationId),
}

impl DomainError for StockItemError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotRegistered => "stock_item_not_found",
            Self::AlreadyRegistered => "stock_item_exists",
            Self::InsufficientStock { .. } => "insufficient_stock",
            Self::AdjustmentBelowReserved { .. } => "adjustment_below_reserved",
            Self::CountOverflow => "count_overflow",
            Self::ReservationNotFound(_) => "reservation_not_found",
            Self::ReservationReleased(_) => "reservation_released",
            Self::ReservationCommitted(_) => "reservation_committed",
            Self::ReservationNotCommitted(_) => "reservation_not_committed",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotRegistered | Self::ReservationNotFound(_) => RejectionKind::NotFound,
            _ => RejectionKind::Conflict,
        }
    }
}
