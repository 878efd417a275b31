//! Process managers: the order and booking flows that run themselves.
//!
//! A saga is a subscriber on the ordered feed with state persisted in `saga_instances`, one row
//! per order or booking. For each event it decides the next commands from its state, issues
//! them (causation = that event), and stores its new state with its checkpoint in the runner's
//! transaction. The commands commit first, in their own transactions, so a crash in between
//! replays the event: every command is idempotent by construction (reservation and payment ids
//! are derived from the owner, status moves repeat as no-ops, the provider sees the same
//! idempotency key), so a replay issues nothing twice.
//!
//! Orders and bookings run the same process over different aggregates; a [`Flow`] says how one
//! owner's events and commands look, [`process`] decides, [`engine`] runs it on the feed.
//!
//! # Layout
//! - [`order_saga`] / [`booking_saga`]: the two flows.
//! - [`process`]: the state machine and its compensations; [`state`]: what a saga remembers
//!   and what it is handed.
//! - [`engine`]: the feed handler (payment-to-saga routing, concurrency, persistence).
//! - [`store`]: `saga_instances` and `saga_steps`.

pub mod booking_saga;
pub mod engine;
pub mod order_saga;
pub mod process;
pub mod state;
pub mod store;

pub use booking_saga::BookingSaga;
pub use engine::SagaRunner;
pub use order_saga::OrderSaga;
pub use state::{SagaData, SagaState};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{Money, Owner, PaymentId, Quantity, Sku};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::Routed;

/// What distinguishes one owner's flow (an order's basket, a booking's seats) from another.
pub trait Flow: Send + Sync + 'static {
    /// The subscription's name (`order_saga`), also the `saga_type` of its rows.
    const NAME: &'static str;
    /// The aggregate the saga drives.
    type Owner: Routed<Command: Clone + Send, Error: Send + Sync>;

    /// The owner a saga id stands for.
    fn owner(id: Uuid) -> Owner;

    /// The saga of a payment's owner, when the owner is of this flow's kind.
    fn saga_of(owner: Owner) -> Option<Uuid>;

    /// What an owner event means to the saga (`None`: nothing to do).
    fn read(event: <Self::Owner as Aggregate>::Event) -> Option<OwnerFact>;

    /// The owner command for a step of the process.
    fn command(step: OwnerStep) -> <Self::Owner as Aggregate>::Command;

    /// Whether the owner is past holding stock (paid, failed, cancelled, expired…): a step it
    /// refuses then is moot, while a refusal of an open owner is a replay the saga continues.
    fn has_moved_on(owner: &Self::Owner) -> bool;

    /// The saga end an owner that has moved on stands for when the saga itself ended it
    /// (stock or payment failed); `None` for an end that comes with an event the saga still
    /// has to handle (cancelled, expired) or a flow that went on (paid).
    fn ended_by_saga(owner: &Self::Owner) -> Option<SagaState>;
}

/// One held line: a SKU and how many units or seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// What.
    pub sku: Sku,
    /// How many.
    pub quantity: Quantity,
}

/// An owner event, as the process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFact {
    /// Placed: hold these lines until `expires_at`, then charge `amount`.
    Placed {
        /// The lines.
        lines: Vec<Line>,
        /// What to charge.
        amount: Money,
        /// The deadline, absent on events recorded before deadlines existed.
        expires_at: Option<DateTime<Utc>>,
    },
    /// Cancelled by the customer or an admin.
    Cancelled,
    /// The deadline passed unpaid.
    Expired,
}

/// An owner command, as the process issues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerStep {
    /// Every line is held.
    StockHeld,
    /// A line could not be held.
    StockFailed {
        /// The line's SKU.
        sku: Sku,
        /// Why.
        reason: String,
    },
    /// The payment exists; the customer can pay.
    PaymentRequested(PaymentId),
    /// Paid and committed.
    Paid(PaymentId),
    /// The payment failed.
    PaymentFailed(String),
    /// The provider cancelled the payment.
    Cancel(String),
    /// The money came back in full.
    Refunded(PaymentId, Money),
}
