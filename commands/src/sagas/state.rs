//! What a saga remembers between events, and what it is handed.

use chrono::{DateTime, Utc};
use domain::{Money, PaymentId};
use serde::{Deserialize, Serialize};

use super::{Line, OwnerFact};

/// Where a saga is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Nothing handled yet.
    #[default]
    New,
    /// Every line is held but no payment was created (the owner ended meanwhile).
    Held,
    /// Lines held, intent created: waiting for the provider.
    AwaitingPayment,
    /// Paid, committed.
    Completed,
    /// A line could not be held; nothing is held.
    StockFailed,
    /// The payment failed or could not be created; nothing is held.
    PaymentFailed,
    /// Cancelled before payment; nothing is held.
    Cancelled,
    /// Expired before payment; nothing is held.
    Expired,
    /// A refund was asked of the provider; its webhook ends the saga.
    Refunding,
    /// The money came back.
    Refunded,
}

impl SagaState {
    /// Every state, for exporting a gauge per state (zero included).
    pub const ALL: [Self; 10] = [
        Self::New,
        Self::Held,
        Self::AwaitingPayment,
        Self::Completed,
        Self::StockFailed,
        Self::PaymentFailed,
        Self::Cancelled,
        Self::Expired,
        Self::Refunding,
        Self::Refunded,
    ];

    /// Whether the flow has ended here: nothing is held and no call is pending. A completed
    /// order can still be refunded later, so `completed` → `refunded` ends twice.
    pub fn is_end(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::StockFailed
                | Self::PaymentFailed
                | Self::Cancelled
                | Self::Expired
                | Self::Refunded
        )
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Held => "held",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Completed => "completed",
            Self::StockFailed => "stock_failed",
            Self::PaymentFailed => "payment_failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }
}

/// Everything a saga remembers between events (the `data` column).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaData {
    /// Where it is.
    pub state: SagaState,
    /// The lines, in SKU order (the order they are reserved in).
    pub lines: Vec<Line>,
    /// What the customer pays.
    pub amount: Option<Money>,
    /// When holds lapse.
    pub expires_at: Option<DateTime<Utc>>,
    /// The payment, once one was created.
    pub payment_id: Option<PaymentId>,
    /// The provider's intent.
    pub intent_id: Option<String>,
    /// The provider reported the payment succeeded.
    pub paid: bool,
    /// A full refund was asked of the provider (at most one per payment).
    pub refund_requested: bool,
}

impl SagaData {
    /// When the owner expires unless it ends first: while the flow waits for the customer to
    /// pay, its `expires_at`; never once it ended (the expiry job claims sagas by this).
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            SagaState::New | SagaState::AwaitingPayment => self.expires_at,
            _ => None,
        }
    }
}

/// A payment event, as the process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentFact {
    /// The customer paid.
    Succeeded,
    /// An attempt failed.
    Failed(String),
    /// The provider cancelled the intent.
    Canceled,
    /// Refunds so far add up to this.
    Refunded(Money),
}

/// What the saga handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An event of the order or booking.
    Owner(OwnerFact),
    /// An event of its payment.
    Payment(PaymentFact),
}

/// One command or provider call a step made, and its answer (the saga's history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// `stock_item/SKU`, `order/<id>`, `payment/<id>` or `gateway`.
    pub target: String,
    /// The command or call.
    pub action: String,
    /// `applied`, `unchanged`, `refused: …`, `failed: …` or the provider's answer.
    pub outcome: String,
}
