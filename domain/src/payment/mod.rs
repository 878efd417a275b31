//! Payment: one payment intent at a provider for one order or booking.
//!
//! Status machine: `created → requires_action → succeeded | failed | canceled`, then `refunded`
//! (full or partial). A failed attempt may still succeed later (the customer retries the card).
//!
//! Invariants (each proven in `tests.rs`):
//! - every provider event id applied is recorded; the same id again changes nothing, so a
//!   webhook delivered twice is harmless;
//! - refunds never exceed what was paid and must be in the payment's currency; a refund id
//!   applied once is not applied again;
//! - a transition the table does not allow is refused with `illegal_transition`.

mod aggregate;
mod command;
mod error;
mod event;
#[cfg(test)]
mod tests;

pub use aggregate::{Payment, PaymentStatus};
pub use command::PaymentCommand;
pub use error::PaymentError;
pub use event::PaymentEvent;
