use crate::{Money, Owner};

/// What can be asked of a Payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Records an intent the gateway created.
    Create {
        /// The order or booking paid for.
        owner: Owner,
        /// How much.
        amount: Money,
        /// Gateway name (`stripe`, `simulated`).
        provider: String,
        /// The provider's intent id (`pi_…`).
        provider_intent_id: String,
        /// Secret the client uses to confirm the intent.
        client_secret: Option<String>,
    },
    /// The provider needs the customer to act (3-D Secure and the like).
    RequireAction {
        /// Provider event id, for deduplication.
        provider_event_id: String,
    },
    /// The provider reports success.
    Succeed {
        /// Provider event id, for deduplication.
        provider_event_id: String,
    },
    /// The provider reports a failed attempt.
    Fail {
        /// Provider event id, for deduplication.
        provider_event_id: String,
        /// The provider's reason.
        reason: String,
    },
    /// The intent was cancelled (by us or at the provider).
    Cancel {
        /// Provider event id when the cancel came from a webhook.
        provider_event_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// Money was (partly) returned.
    Refund {
        /// Provider event id when the refund came from a webhook.
        provider_event_id: Option<String>,
        /// The provider's refund id (`re_…`), for deduplication.
        refund_id: String,
        /// How much.
        amount: Money,
    },
}

impl PaymentCommand {
    /// The variant's name (`"Create"`): a bounded label for metrics and logs that
    /// does not carry the command's data.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "Create",
            Self::RequireAction { .. } => "RequireAction",
            Self::Succeed { .. } => "Succeed",
            Self::Fail { .. } => "Fail",
            Self::Cancel { .. } => "Cancel",
            Self::Refund { .. } => "Refund",
        }
    }
}
