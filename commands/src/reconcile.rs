//! Compares the payment provider's intents with Reserva's Payment aggregates.
//!
//! Webhooks are the only way the provider's word reaches Reserva; a lost or misrouted one
//! leaves the two disagreeing with nobody noticing. Reconciliation reads both sides and
//! reports every disagreement; it changes nothing. Payments are matched to intents by the
//! intent id the Payment recorded. An intent without a `payment_id` in its metadata was not
//! created by Reserva and is left out.
//!
//! Flows in progress show up as transient discrepancies (an intent created a moment before its
//! Payment is recorded, a webhook not delivered yet): run it again before acting on one.

use std::collections::{HashMap, HashSet};
use std::fmt;

use domain::payment::{Payment, PaymentError, PaymentStatus};
use domain::{Money, PaymentId};

use crate::bus::CommandBus;
use crate::error::CommandError;
use crate::payment_gateway::{PaymentGateway, PaymentGatewayError, ProviderIntent};

const PAYMENT_IDS: &str =
    "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'payment' ORDER BY 1";

/// One way the provider and Reserva disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discrepancy {
    /// The provider holds an intent made for Reserva (its metadata names a payment) that no
    /// Payment records: the payment does not exist or records another intent.
    UnknownIntent {
        /// The provider's intent.
        intent_id: String,
        /// The payment its metadata names.
        payment_id: PaymentId,
        /// Its status at the provider.
        status: String,
        /// Its amount.
        amount: Money,
    },
    /// A Payment records an intent the provider does not have.
    MissingIntent {
        /// The payment.
        payment_id: PaymentId,
        /// The intent it records.
        intent_id: String,
        /// Its status in Reserva.
        status: PaymentStatus,
    },
    /// The two sides disagree on where the payment is.
    StatusMismatch {
        /// The payment.
        payment_id: PaymentId,
        /// Its intent.
        intent_id: String,
        /// Reserva's status.
        ours: PaymentStatus,
        /// The provider's status.
        provider: String,
    },
    /// The two sides disagree on how much is paid for.
    AmountMismatch {
        /// The payment.
        payment_id: PaymentId,
        /// Its intent.
        intent_id: String,
        /// Reserva's amount.
        ours: Money,
        /// The provider's amount.
        provider: Money,
    },
    /// The two sides disagree on how much was refunded (minor units).
    RefundedMismatch {
        /// The payment.
        payment_id: PaymentId,
        /// Its intent.
        intent_id: String,
        /// Refunded according to Reserva.
        ours: i64,
        /// Refunded according to the provider.
        provider: i64,
    },
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIntent {
                intent_id,
                payment_id,
                status,
                amount,
            } => write!(
                f,
                "unknown intent: {intent_id} ({status}, {}) names payment {payment_id}, \
                 which does not record it",
                show(*amount)
            ),
            Self::MissingIntent {
                payment_id,
                intent_id,
                status,
            } => write!(
                f,
                "missing intent: payment {payment_id} ({status}) records {intent_id}, \
                 which the provider does not have"
            ),
            Self::StatusMismatch {
                payment_id,
                intent_id,
                ours,
                provider,
            } => write!(
                f,
                "status mismatch: payment {payment_id} is {ours}, intent {intent_id} is {provider}"
            ),
            Self::AmountMismatch {
                payment_id,
                intent_id,
                ours,
                provider,
            } => write!(
                f,
                "amount mismatch: payment {payment_id} is for {}, intent {intent_id} for {}",
                show(*ours),
                show(*provider)
            ),
            Self::RefundedMismatch {
                payment_id,
                intent_id,
                ours,
                provider,
            } => write!(
                f,
                "refunded mismatch: payment {payment_id} has {ours} refunded, \
                 intent {intent_id} {provider}"
            ),
        }
    }
}

fn show(money: Money) -> String {
    format!("{} {}", money.amount, money.currency)
}

/// Why reconciliation could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The payments could not be read from the event store.
    #[error("reading payments from the event store")]
    Store(#[source] CommandError<PaymentError>),
    /// The provider's intents could not be listed.
    #[error("listing the provider's intents")]
    Gateway(#[source] PaymentGatewayError),
}

/// Every discrepancy between `gateway`'s intents and the Payments recorded for that provider
/// (`Payment::provider() == gateway.provider()`; other providers' payments are not compared).
/// Payments come first, in id order, then unknown intents in the provider's order.
///
/// Read-only on both sides.
///
/// # Errors
/// [`ReconcileError::Store`] when the event store fails, [`ReconcileError::Gateway`] when the
/// provider cannot be listed.
pub async fn reconcile(
    bus: &CommandBus,
    gateway: &dyn PaymentGateway,
) -> Result<Vec<Discrepancy>, ReconcileError> {
    let intents = gateway
        .list_intents()
        .await
        .map_err(ReconcileError::Gateway)?;
    let ids: Vec<String> = sqlx::query_scalar(PAYMENT_IDS)
        .fetch_all(bus.pool())
        .await
        .map_err(|e| ReconcileError::Store(CommandError::from_sqlx(e)))?;
    let by_id: HashMap<&str, &ProviderIntent> =
        intents.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut found = Vec::new();
    let mut recorded = HashSet::new();
    for id in ids {
        let payment = bus
            .load::<Payment>(&id)
            .await
            .map_err(ReconcileError::Store)?;
        let (Some(status), Some(amount), Ok(uuid)) =
            (payment.status(), payment.amount(), id.parse())
        else {
            continue;
        };
        if payment.provider() != gateway.provider() {
            continue;
        }
        let payment_id = PaymentId(uuid);
        let intent_id = payment.provider_intent_id().to_owned();
        recorded.insert(intent_id.clone());
        match by_id.get(intent_id.as_str()) {
            None => found.push(Discrepancy::MissingIntent {
                payment_id,
                intent_id,
                status,
            }),
            Some(intent) => {
                let refunded = payment.refunded().map_or(0, |m| m.amount);
                compare(payment_id, status, amount, refunded, intent, &mut found);
            }
        }
    }
    for intent in &intents {
        if let Some(payment_id) = intent.payment_id
            && !recorded.contains(&intent.id)
        {
            found.push(Discrepancy::UnknownIntent {
                intent_id: intent.id.clone(),
                payment_id,
                status: intent.status.clone(),
                amount: intent.amount,
            });
        }
    }
    Ok(found)
}

/// The discrepancies between one Payment and the intent it records.
fn compare(
    payment_id: PaymentId,
    ours: PaymentStatus,
    amount: Money,
    refunded: i64,
    intent: &ProviderIntent,
    found: &mut Vec<Discrepancy>,
) {
    let intent_id = || intent.id.clone();
    if !statuses_agree(ours, &intent.status) {
        found.push(Discrepancy::StatusMismatch {
            payment_id,
            intent_id: intent_id(),
            ours,
            provider: intent.status.clone(),
        });
    }
    if amount != intent.amount {
        found.push(Discrepancy::AmountMismatch {
            payment_id,
            intent_id: intent_id(),
            ours: amount,
            provider: intent.amount,
        });
    }
    if refunded != intent.amount_refunded {
        found.push(Discrepancy::RefundedMismatch {
            payment_id,
            intent_id: intent_id(),
            ours: refunded,
            provider: intent.amount_refunded,
        });
    }
}

/// Whether Reserva's status is one the provider's status allows. A Stripe intent stays
/// `succeeded` after refunds, and a failed attempt leaves it waiting for another payment
/// method, so several of ours map to one of Stripe's. `requires_capture` counts as unpaid:
/// Reserva captures automatically.
pub fn statuses_agree(ours: PaymentStatus, provider: &str) -> bool {
    use PaymentStatus as S;
    match provider {
        "succeeded" => matches!(ours, S::Succeeded | S::Refunded),
        "canceled" => ours == S::Canceled,
        "requires_payment_method"
        | "requires_confirmation"
        | "requires_action"
        | "processing"
        | "requires_capture" => matches!(ours, S::Created | S::RequiresAction | S::Failed),
        _ => false,
    }
}
