//! The ordered event feed of Reserva and everything that follows it durably.
//!
//! Events are rows here, not aggregates' rules: this crate reads the store in commit order,
//! hands batches to [`Handler`]s inside transactions that also move their checkpoints, holds
//! back what a handler cannot apply (dead letters, sequenced per aggregate), and wakes readers
//! when something was appended. Read models (`projections`) and process managers (`commands`'
//! sagas) are both handlers.
//!
//! # Layout
//! - [`event`]: [`FeedEvent`] and [`Checkpoint`].
//! - [`read`]: reading the feed in `(transaction_id, global_position)` order.
//! - [`signal`]: [`FeedSignal`], the in-process wake-up; [`relay`]: wake-ups between
//!   processes (`LISTEN`/`NOTIFY` outside the append).
//! - [`handler`]: the [`Handler`] trait and how failures are told apart.
//! - [`runner`]: [`Subscription`], one runner per subscription across processes.
//! - [`tail`]: [`Tail`], a process's own checkpoint-less follower for live views.
//! - [`checkpoint`]: the `subscriptions` rows; [`locks`]: advisory locks and connections.
//! - [`dead_letters`]: held events and operators' requests; [`retry`]: trying them again.
//! - [`options`], [`backoff`]: tuning.
//! - [`trace_context`]: W3C `traceparent` stored with events and continued by handlers.
//!
//! # Rules this crate keeps
//! Depends on no other crate of the workspace. Every transaction is an sqlx
//! [`sqlx::Transaction`] guard: none is opened or ended with a statement string.
#![warn(missing_docs)]

mod attempt;
pub mod backoff;
pub mod checkpoint;
pub mod dead_letters;
pub mod event;
pub mod handler;
pub mod locks;
pub mod options;
pub mod read;
pub mod relay;
pub mod retry;
pub mod runner;
pub mod signal;
pub mod tail;
mod telemetry;
pub mod trace_context;

pub use event::{Checkpoint, FeedEvent};
pub use handler::{Handler, HandlerError, RunnerError};
pub use options::SubscriptionOptions;
pub use read::{
    checkpoint_of, head, held_back, oldest_transaction_age, read_after, read_positions, read_range,
    stream_all, stream_until,
};
pub use runner::{Subscription, SubscriptionHandle};
pub use signal::FeedSignal;
pub use tail::{Follower, Tail};
