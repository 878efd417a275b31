//! The payment provider behind a trait, so sagas can pay through Stripe in production and
//! through a local simulation on a laptop or in tests.
//!
//! Every call carries a deterministic idempotency key (`create-<payment_id>`,
//! `cancel-<intent_id>`, `refund-<refund_key>`): a saga that replays a step after a crash, or
//! the retry layer re-sending an attempt, reaches the same provider object instead of creating
//! a second one.
//!
//! # Layout
//! - [`stripe`]: [`StripeGateway`], the real provider through async-stripe.
//! - [`simulated`]: [`SimulatedGateway`], settles locally and delivers signed webhooks.
//! - [`resilience`]: [`Resilient`], timeouts, retries and a circuit breaker around either.
//! - [`chaos`]: [`Chaos`], faults the simulated gateway injects on demand.

pub mod chaos;
pub mod resilience;
pub mod simulated;
pub mod stripe;

pub use chaos::{Chaos, ChaosError, Fault};
pub use resilience::{ResiliencePolicy, Resilient};
pub use simulated::SimulatedGateway;
pub use stripe::StripeGateway;

use domain::{Money, Owner, PaymentId};

/// A payment provider. Implementations make exactly one attempt per call; retrying is
/// [`Resilient`]'s job, which re-sends the same idempotency key.
#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync {
    /// The provider's name as recorded on the Payment (`"stripe"`, `"simulated"`).
    fn provider(&self) -> &'static str;

    /// Creates (or, for a repeated `payment_id`, finds again) the intent the customer pays.
    ///
    /// # Errors
    /// [`PaymentGatewayError::Declined`] when the provider refuses the request, otherwise
    /// [`PaymentGatewayError::Unavailable`].
    async fn create_intent(&self, request: &IntentRequest) -> Result<Intent, PaymentGatewayError>;

    /// Cancels an unpaid intent. Idempotent per intent.
    ///
    /// # Errors
    /// As [`PaymentGateway::create_intent`].
    async fn cancel_intent(&self, intent_id: &str) -> Result<(), PaymentGatewayError>;

    /// Returns `amount` of a paid intent; returns the provider's refund id. Idempotent per
    /// `refund_key`, so the same logical refund is never paid out twice.
    ///
    /// # Errors
    /// As [`PaymentGateway::create_intent`].
    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        refund_key: &str,
    ) -> Result<String, PaymentGatewayError>;

    /// Every intent the provider holds, all pages, for reconciliation. Read-only, so safe to
    /// repeat. Includes intents that are not Reserva's (no `payment_id` in their metadata).
    ///
    /// # Errors
    /// As [`PaymentGateway::create_intent`]; [`PaymentGatewayError::Declined`] also when an
    /// intent cannot be represented (a currency Reserva does not know).
    async fn list_intents(&self) -> Result<Vec<ProviderIntent>, PaymentGatewayError>;
}

/// What an intent is created for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRequest {
    /// The Payment aggregate; also the idempotency key's seed and the webhook's way back.
    pub payment_id: PaymentId,
    /// The order or booking paid for.
    pub owner: Owner,
    /// How much.
    pub amount: Money,
}

/// An intent the provider created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The provider's id (`pi_…`).
    pub id: String,
    /// Handed to the client to confirm the payment.
    pub client_secret: Option<String>,
}

/// One intent as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIntent {
    /// The provider's id (`pi_…`).
    pub id: String,
    /// Stripe's status string (`requires_payment_method`, `succeeded`, `canceled`, …).
    pub status: String,
    /// What the intent is for.
    pub amount: Money,
    /// Refunded so far, in minor units of `amount`'s currency (cumulative).
    pub amount_refunded: i64,
    /// The Payment named in the intent's metadata; `None` for intents Reserva did not create.
    pub payment_id: Option<PaymentId>,
}

/// Why a gateway call did not succeed; the split decides whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentGatewayError {
    /// The provider refused the request: permanent, never retried.
    #[error("the provider declined: {0}")]
    Declined(String),
    /// Timeouts, 5xx, 409/429 or network errors, after any retries.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// Recent calls kept failing, so this one was not attempted.
    #[error("the provider circuit is open")]
    CircuitOpen,
}

impl PaymentGatewayError {
    /// Stable label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Declined(_) => "declined",
            Self::Unavailable(_) => "unavailable",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// Idempotency key of the intent for `payment_id`.
pub fn create_key(payment_id: PaymentId) -> String {
    format!("create-{payment_id}")
}

/// Idempotency key of cancelling `intent_id`.
pub fn cancel_key(intent_id: &str) -> String {
    format!("cancel-{intent_id}")
}

/// Idempotency key of the refund the caller names `refund_key`.
pub fn refund_key(refund_key: &str) -> String {
    format!("refund-{refund_key}")
}
