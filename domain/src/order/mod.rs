//! Order: a customer's basket of SKUs, driven through its life by the order saga.
//!
//! Status machine: `STARTED → STOCK_RESERVED → PAYMENT_PENDING → COMPLETED`, ending instead in
//! `STOCK_FAILED`, `PAYMENT_FAILED`, `CANCELLED`, `EXPIRED` or `REFUNDED`.
//!
//! Invariants (each proven in `tests.rs`):
//! - an order has at least one item, no SKU twice, and one currency; its total is the sum of
//!   quantity × unit price;
//! - every transition is an event; a transition the table does not allow is refused with
//!   `illegal_transition`; repeating the transition already made records nothing;
//! - an order completes only from `PAYMENT_PENDING` (stock reserved, payment requested) and only
//!   with the payment it requested.

mod aggregate;
mod command;
mod error;
mod event;
#[cfg(test)]
mod tests;

pub use aggregate::{Order, OrderStatus};
pub use command::{OrderCommand, OrderItem};
pub use error::OrderError;
pub use event::{Canceller, OrderEvent};
