use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{Money, Owner};

/// Facts recorded about a Payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentEvent {
    /// An intent exists at the provider.
    PaymentCreated {
        /// The order or booking paid for.
        owner: Owner,
        /// How much.
        amount: Money,
        /// Gateway name.
        provider: String,
        /// The provider's intent id.
        provider_intent_id: String,
        /// Client secret, if the provider gave one.
        client_secret: Option<String>,
    },
    /// The customer must act.
    PaymentRequiresAction {
        /// Provider event id.
        provider_event_id: String,
    },
    /// Paid.
    PaymentSucceeded {
        /// Provider event id.
        provider_event_id: String,
    },
    /// An attempt failed.
    PaymentFailed {
        /// Provider event id.
        provider_event_id: String,
        /// Why.
        reason: String,
    },
    /// Cancelled.
    PaymentCanceled {
        /// Provider event id, if from a webhook.
        provider_event_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// Money returned.
    PaymentRefunded {
        /// Provider event id, if from a webhook.
        provider_event_id: Option<String>,
        /// The provider's refund id.
        refund_id: String,
        /// This refund.
        amount: Money,
        /// All refunds so far, including this one.
        refunded_total: Money,
    },
}

impl PaymentEvent {
    /// The provider event this fact came from, if any.
    pub fn provider_event_id(&self) -> Option<&str> {
        match self {
            Self::PaymentRequiresAction { provider_event_id }
            | Self::PaymentSucceeded { provider_event_id }
            | Self::PaymentFailed {
                provider_event_id, ..
            } => Some(provider_event_id),
            Self::PaymentCanceled {
                provider_event_id, ..
            }
            | Self::PaymentRefunded {
                provider_event_id, ..
            } => provider_event_id.as_deref(),
            Self::PaymentCreated { .. } => None,
        }
    }
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentCreated { .. } => "PaymentCreated",
            Self::PaymentRequiresAction { .. } => "PaymentRequiresAction",
            Self::PaymentSucceeded { .. } => "PaymentSucceeded",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::PaymentCanceled { .. } => "PaymentCanceled",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
