//! The read side of Reserva: read models fed by the ordered event feed, the queries over them,
//! and their rebuild.
//!
//! Each read model is a durable subscription (see `feed::runner`): it applies a
//! batch and advances its checkpoint in one transaction, so no crash can double-apply or skip
//! an event. A rebuild fills shadow tables from position zero while the live tables keep
//! answering, then swaps them in one transaction.
//!
//! # Layout
//! - [`read_model`]: the [`read_model::ReadModel`] trait, one table folded from one aggregate
//!   type; [`projector`]: the live batch path behind every model; [`bulk`]: a rebuild's
//!   in-memory fold.
//! - [`models`]: orders, bookings, stock levels and payments.
//! - [`catalog`]: the list of projections, starting them, and which caches each one writes.
//! - [`row_cache`]: hot rows (and joined views) kept in memory where their runners write them.
//! - [`rebuild`]: shadow build and swap.
//! - [`verify`]: a model folded from the store and compared with its table, row by row.
//! - [`status`]: each projection's position and lag, and the feed's stall.
//! - [`wait`]: read-your-writes (`min_position`).
//! - [`queries`]: what the API reads; orders and bookings with their payments at one point of
//!   the feed (`joined`).
//!
//! # Rules this crate keeps
//! Queries read only read models. Depends on `domain` and `feed` only, never on HTTP or the
//! write side.
#![warn(missing_docs)]

pub mod bulk;
pub mod catalog;
mod joined;
pub mod models;
pub mod projector;
pub mod queries;
pub mod read_model;
pub mod rebuild;
pub mod row_cache;
pub mod status;
pub mod verify;
pub mod wait;
