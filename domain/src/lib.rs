//! The language of Reserva's business: four event-sourced aggregates and the values they share.
//!
//! Every rule that protects money or stock lives here, decided synchronously from the aggregate's
//! own history and the data in the command. Anything a decision needs from the outside world (the
//! time, a price, a provider id) is put into the command by the caller, so the aggregates can be
//! replayed and tested without I/O.
//!
//! # Layout
//! - [`money`]: `Money` in integer minor units and ISO 4217 `Currency`.
//! - [`quantity`]: `Quantity` (1..=1000 per command) and the validated `Sku`.
//! - [`ids`]: UUID newtypes and the deterministic ids sagas rely on for idempotency.
//! - [`rejection`]: the `DomainError` trait that gives every refusal a stable machine code.
//! - [`stock_item`], [`order`], [`booking`], [`payment`]: one folder per aggregate.
//! - [`upcast`]: old event payloads upgraded to today's shape when read.
//!
//! # Rules this crate keeps
//! No I/O, no SQL, no HTTP, no clock: `type Services = ()` on every aggregate.
#![deny(missing_docs)]

pub mod booking;
pub mod ids;
pub mod money;
pub mod order;
pub mod payment;
pub mod quantity;
pub mod rejection;
pub mod status;
pub mod stock_item;
pub mod upcast;

pub use ids::{BookingId, CustomerId, OrderId, Owner, PaymentId, ReservationId};
pub use money::{Currency, Money, MoneyError};
pub use quantity::{Quantity, Sku, ValueError};
pub use rejection::{DomainError, RejectionKind};
pub use upcast::{needs_upcast, upcast};
