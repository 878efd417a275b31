//! Booking: guests on a time slot (a StockItem of kind `time_slot`), driven by the booking saga.
//!
//! Status machine: `PENDING_PAYMENT → CONFIRMED`, ending instead in `SEATS_UNAVAILABLE`,
//! `CANCELLED`, `EXPIRED`, `PAYMENT_FAILED` or `REFUNDED`.
//!
//! Invariants (each proven in `tests.rs`):
//! - a booking has at least one guest and its total is guests × seat price;
//! - a transition the table does not allow is refused with `illegal_transition`; repeating the
//!   transition already made records nothing;
//! - a booking is confirmed only once its seats are held and only with the payment it requested.

mod aggregate;
mod command;
mod error;
mod event;
#[cfg(test)]
mod tests;

pub use aggregate::{Booking, BookingStatus};
pub use command::BookingCommand;
pub use error::BookingError;
pub use event::BookingEvent;
