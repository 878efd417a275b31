//! StockItem: anything countable that can be reserved — a product's units or a time slot's seats.
//!
//! Invariants (each proven in `tests.rs`):
//! - the sum of open reservations never exceeds `on_hand`, and `on_hand` never goes below zero;
//! - reserving more than is available is refused with `insufficient_stock`;
//! - a reserve whose id is already held (or was already closed) is a no-op, so a saga can retry;
//!   closed reservations are remembered for a bounded time ([`memory`]), so the state stays small;
//! - releasing a reservation twice, or one never held, is a no-op;
//! - committing turns a hold into a sale: `on_hand` drops, availability does not change;
//! - a low-stock event is emitted when availability crosses down to the threshold, and a depleted
//!   event when it reaches zero.

mod aggregate;
mod command;
mod error;
mod event;
pub mod memory;
#[cfg(test)]
mod tests;

pub use aggregate::{Reservation, StockItem};
pub use command::{ReleaseReason, StockItemCommand, StockKind};
pub use error::StockItemError;
pub use event::StockItemEvent;
