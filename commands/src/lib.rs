//! The write side of Reserva: the PostgreSQL event store and command execution.
//!
//! Commands are decided by the `domain` aggregates and their events appended through
//! postgres-es's event-sourced store. This crate adds what the framework leaves out: metadata on
//! every event (who, why, which request), a bounded and jittered retry when two writers race for
//! the same aggregate, and the global position of what was written so readers can wait for it.
//!
//! # Layout
//! - [`store`]: the embedded migrations and the cqrs-es store per aggregate.
//! - [`repository`]: postgres-es reads plus a one-round-trip append that reports positions.
//! - [`cache`]: recently used aggregates, validated by the append's sequence check.
//! - [`bus`]: [`CommandBus`], the one way commands reach an aggregate.
//! - [`deadlines`]: the scheduled job that expires unpaid orders and bookings.
//! - [`locks`]: in-process serialization of commands per aggregate.
//! - [`metadata`]: [`CommandMetadata`] stored with each event.
//! - [`error`]: the `CommandError` type.
//! - [`payment_gateway`]: the payment provider (Stripe or simulated) behind retries and a
//!   breaker.
//! - [`provider_events`]: verified Stripe webhooks turned into Payment commands.
//! - [`reconcile`]: the provider's intents compared with the Payment aggregates.
//! - [`sagas`]: the order and booking process managers on the feed.
//! - [`snapshots`]: the latest state of long streams, so cold loads stay short.
//! - [`audit`]: histories, as-of states, causation traces, hash-chain verification, replay.
//!
//! # Rules this crate keeps
//! Depends on `domain` and `feed`, never on HTTP or on the read side.
#![warn(missing_docs)]

pub mod audit;
pub mod bus;
pub mod cache;
pub mod deadlines;
pub mod error;
pub mod locks;
pub mod metadata;
pub mod payment_gateway;
pub mod provider_events;
pub mod reconcile;
pub mod repository;
pub mod sagas;
pub mod snapshots;
pub mod store;

pub use bus::{CommandBus, Committed, RetryPolicy};
pub use error::CommandError;
pub use feed::{Checkpoint, FeedEvent, FeedSignal};
pub use metadata::CommandMetadata;
pub use snapshots::SnapshotPolicy;
pub use store::MIGRATOR;
