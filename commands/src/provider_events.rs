//! Stripe webhooks turned into Payment commands.
//!
//! The signature is checked on the raw body before anything is parsed (HMAC-SHA256 over
//! `{timestamp}.{body}` with the endpoint secret, 5-minute tolerance, by `stripe_webhook`).
//! Every command carries the provider's event id, which the Payment aggregate remembers, so a
//! duplicate delivery records nothing. Refunds are applied from the charge's *cumulative*
//! refunded amount, so partial refunds delivered out of order still add up exactly once.

use cqrs_es::Aggregate;
use domain::payment::{Payment, PaymentCommand, PaymentError};
use domain::{Currency, Money, PaymentId};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use stripe_webhook::{EventObject, Webhook, WebhookError};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::bus::CommandBus;
use crate::error::CommandError;
use crate::metadata::CommandMetadata;

/// Why a delivery was refused: the caller records nothing and answers 400, except for
/// [`Rejected::NotYetRecorded`] (503, so the provider delivers again).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The signature does not match the body.
    #[error("the Stripe-Signature does not match the body")]
    BadSignature,
    /// The signed timestamp is more than 5 minutes away from now.
    #[error("the signed timestamp is outside the 5-minute tolerance")]
    Stale,
    /// The header is not `t=…,v1=…`.
    #[error("the Stripe-Signature header is malformed")]
    BadHeader,
    /// Correctly signed but not a Stripe event.
    #[error("the body is not a Stripe event: {0}")]
    Malformed(String),
    /// The intent belongs to an order or booking Reserva has, whose saga has not recorded the
    /// Payment yet (the provider can be faster than the saga's next command).
    #[error("payment {0} is not recorded yet; deliver again")]
    NotYetRecorded(Uuid),
}

/// What a verified delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Payment changed (`position` of its last event).
    Applied {
        /// The payment.
        payment_id: Uuid,
        /// Its last event's global position.
        position: Option<i64>,
    },
    /// The delivery changed nothing: a payment in a state the event no longer moves, or an
    /// event type Reserva does not act on.
    Ignored(String),
    /// The delivery was applied before (a redelivery, or a refund state already recorded).
    Duplicate(String),
    /// The Payment refused what the provider reports (e.g. a failure after success): the
    /// provider's word cannot be refused, so it is acknowledged and changes nothing.
    Refused(String),
}

/// A verified event, reduced to what Reserva acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Succeeded,
    Failed(String),
    Canceled(String),
    Refunded {
        charge_id: String,
        refunded_total: i64,
        currency: String,
    },
}

/// The longest a delivery waiting for its payment goes without looking again (a payment
/// recorded by an instance whose announcement does not arrive).
pub const RECORD_POLL: Duration = Duration::from_millis(50);

type Received = Result<Outcome, Result<Rejected, CommandError<PaymentError>>>;

/// Verifies a delivery against `secret` and applies it.
///
/// Counted in `reserva_webhooks_total{type,outcome}`: `type` is the Stripe event type
/// (`unknown` when the delivery was refused before it could be read), `outcome` one of
/// [`outcome_label`].
///
/// A delivery can beat the saga: Stripe may report an intent's outcome before the saga has
/// committed the `PaymentCreated` of the intent it just created. Such a delivery waits up to
/// `wait` for a payment to be recorded (woken by this process's payment appends and those
/// other instances announce, looking again at least every [`RECORD_POLL`]) instead of
/// answering 503 at once: Stripe redelivers with an exponential back-off over up to three
/// days, which would leave the order waiting for its payment far longer than the saga needs.
///
/// # Errors
/// `Err(Ok(Rejected))` for a delivery to refuse with 400 (or 503 for
/// [`Rejected::NotYetRecorded`] once `wait` has passed); `Err(Err(CommandError))` when the
/// store failed (the caller answers 5xx and Stripe delivers again).
pub async fn receive(
    bus: &CommandBus,
    pool: &PgPool,
    payload: &str,
    signature: &str,
    secret: &str,
    wait: Duration,
) -> Received {
    let deadline = Instant::now() + wait;
    let mut kind = None;
    let mut payments: Option<watch::Receiver<u64>> = None;
    let received = loop {
        let received = verify_and_apply(bus, pool, payload, signature, secret, &mut kind).await;
        let now = Instant::now();
        if !matches!(received, Err(Ok(Rejected::NotYetRecorded(_)))) || now >= deadline {
            break received;
        }
        match payments.as_mut() {
            // Subscribed before looking again, so a commit in between is not missed.
            None => {
                payments = Some(bus.feed_signal().subscribe(
                    "webhook awaiting its payment",
                    Arc::new(|t: &str| t == Payment::TYPE),
                ));
            }
            Some(appended) => {
                let _ =
                    tokio::time::timeout(RECORD_POLL.min(deadline - now), appended.changed()).await;
            }
        }
    };
    record(
        kind.as_deref().unwrap_or("unknown"),
        outcome_label(&received),
    );
    received
}

/// Counts one delivery in `reserva_webhooks_total` (also for deliveries refused before
/// [`receive`], e.g. without a signature header).
pub fn record(kind: &str, outcome: &'static str) {
    metrics::counter!("reserva_webhooks_total", "type" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// The `outcome` label of a delivery: `applied`, `duplicate`, `ignored` (nothing to do),
/// `rejected` (the Payment refused it; acknowledged), `not_recorded` (503, delivered again),
/// `invalid_signature` (bad, stale or malformed signature), `malformed` (signed, not an event)
/// or `error` (the store failed).
pub fn outcome_label(received: &Received) -> &'static str {
    match received {
        Ok(Outcome::Applied { .. }) => "applied",
        Ok(Outcome::Duplicate(_)) => "duplicate",
        Ok(Outcome::Refused(_)) => "rejected",
        Ok(Outcome::Ignored(_)) => "ignored",
        Err(Ok(Rejected::NotYetRecorded(_))) => "not_recorded",
        Err(Ok(Rejected::BadSignature | Rejected::Stale | Rejected::BadHeader)) => {
            "invalid_signature"
        }
        Err(Ok(Rejected::Malformed(_))) => "malformed",
        Err(Err(_)) => "error",
    }
}

// Straight-line on purpose: verify the signature, map the event, find the payment, apply; the
// order is the webhook's contract and each step's refusal is answered where it happens.
async fn verify_and_apply(
    bus: &CommandBus,
    pool: &PgPool,
    payload: &str,
    signature: &str,
    secret: &str,
    kind: &mut Option<String>,
) -> Received {
    let event = Webhook::construct_event(payload, signature, secret).map_err(|e| {
        Ok(match e {
            WebhookError::BadSignature | WebhookError::BadKey => Rejected::BadSignature,
            WebhookError::BadTimestamp(_) => Rejected::Stale,
            WebhookError::BadHeader(_) => Rejected::BadHeader,
            WebhookError::BadParse(message) => Rejected::Malformed(message),
        })
    })?;
    let event_id = event.id.as_str().to_owned();
    *kind = Some(event.type_.to_string());
    let (action, intent_id, metadata) = match event.data.object {
        EventObject::PaymentIntentSucceeded(intent) => (
            Action::Succeeded,
            intent.id.as_str().to_owned(),
            intent.metadata,
        ),
        EventObject::PaymentIntentPaymentFailed(intent) => {
            let reason = intent
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "the payment failed".to_owned());
            (
                Action::Failed(reason),
                intent.id.as_str().to_owned(),
                intent.metadata,
            )
        }
        EventObject::PaymentIntentCanceled(intent) => {
            let reason = "canceled at the provider".to_owned();
            (
                Action::Canceled(reason),
                intent.id.as_str().to_owned(),
                intent.metadata,
            )
        }
        EventObject::ChargeRefunded(charge) => {
            let Some(intent) = charge.payment_intent.as_ref() else {
                return Ok(Outcome::Ignored(
                    "a refunded charge without an intent".to_owned(),
                ));
            };
            let action = Action::Refunded {
                charge_id: charge.id.as_str().to_owned(),
                refunded_total: charge.amount_refunded,
                currency: charge.currency.to_string(),
            };
            (action, intent.id().as_str().to_owned(), charge.metadata)
        }
        _ => {
            tracing::info!(event_id, kind = %event.type_, "Stripe event acknowledged and ignored");
            return Ok(Outcome::Ignored(format!("{} is not acted on", event.type_)));
        }
    };
    let payment_id = match metadata.get("payment_id").and_then(|id| id.parse().ok()) {
        Some(id) => Some(id),
        None => payment_of_intent(pool, &intent_id)
            .await
            .map_err(|e| Err(CommandError::from_sqlx(e)))?,
    };
    let Some(payment_id) = payment_id else {
        tracing::warn!(
            event_id,
            intent_id,
            "Stripe event for an intent Reserva does not know"
        );
        return Ok(Outcome::Ignored(format!(
            "no payment for intent {intent_id}"
        )));
    };
    let payment_id = PaymentId(payment_id);
    match apply(bus, payment_id, &event_id, action).await {
        Err(CommandError::Rejected(PaymentError::NotFound)) => {
            if owner_exists(bus, &metadata).await.map_err(Err)? {
                Err(Ok(Rejected::NotYetRecorded(payment_id.0)))
            } else {
                tracing::warn!(event_id, payment = %payment_id, "Stripe event for an unknown payment");
                Ok(Outcome::Ignored(format!("no payment {payment_id}")))
            }
        }
        other => other.map_err(Err),
    }
}

/// Whether the metadata names an order or booking the store holds.
async fn owner_exists(
    bus: &CommandBus,
    metadata: &std::collections::HashMap<String, String>,
) -> Result<bool, CommandError<PaymentError>> {
    let unavailable = |e: &dyn std::fmt::Display| {
        CommandError::Unavailable(Box::new(std::io::Error::other(e.to_string())))
    };
    if let Some(id) = metadata.get("order_id") {
        let order = bus
            .load::<domain::order::Order>(id)
            .await
            .map_err(|e| unavailable(&e))?;
        return Ok(order.status().is_some());
    }
    if let Some(id) = metadata.get("booking_id") {
        let booking = bus
            .load::<domain::booking::Booking>(id)
            .await
            .map_err(|e| unavailable(&e))?;
        return Ok(booking.status().is_some());
    }
    Ok(false)
}

/// The payment whose intent is `intent_id`, for events that do not carry the intent's
/// metadata (a refunded charge): its `PaymentCreated` event in the store names the intent
/// (an expression index finds it, `events_payment_intent`).
async fn payment_of_intent(pool: &PgPool, intent_id: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events \
         WHERE aggregate_type = 'payment' AND event_type = 'PaymentCreated' \
           AND (payload -> 'PaymentCreated' ->> 'provider_intent_id') = $1 \
         LIMIT 1",
    )
    .bind(intent_id)
    .fetch_optional(pool)
    .await?;
    Ok(id.and_then(|id| id.parse().ok()))
}

/// The provider acts on the intent the payment's `PaymentCreated` (its first event) asked for,
/// so its webhook's commands join that event's correlation and name it as their cause: a
/// request's audit trace reaches the money. `None` while the payment is not recorded yet (the
/// provider can answer before the saga's append commits); the webhook is then refused as
/// not-yet-recorded and redelivered, so it is never filed under a correlation of its own.
async fn caused_by_payment(
    pool: &PgPool,
    payment_id: &str,
) -> Result<Option<CommandMetadata>, sqlx::Error> {
    let correlation: Option<Option<String>> = sqlx::query_scalar(
        "SELECT metadata->>'correlation_id' FROM events \
         WHERE aggregate_type = 'payment' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(payment_id)
    .fetch_optional(pool)
    .await?;
    Ok(correlation.map(|correlation| {
        let mut metadata = CommandMetadata::system("stripe");
        if let Some(correlation) = correlation {
            metadata.correlation_id = correlation;
        }
        metadata.causation_id = format!("payment/{payment_id}/1");
        metadata
    }))
}

async fn apply(
    bus: &CommandBus,
    payment_id: PaymentId,
    event_id: &str,
    action: Action,
) -> Result<Outcome, CommandError<PaymentError>> {
    let id = payment_id.to_string();
    let provider_event_id = event_id.to_owned();
    let command = match action {
        Action::Succeeded => PaymentCommand::Succeed { provider_event_id },
        Action::Failed(reason) => PaymentCommand::Fail {
            provider_event_id,
            reason,
        },
        Action::Canceled(reason) => PaymentCommand::Cancel {
            provider_event_id: Some(provider_event_id),
            reason,
        },
        Action::Refunded {
            charge_id,
            refunded_total,
            currency,
        } => {
            let payment = bus.load::<Payment>(&id).await?;
            let already = payment.refunded().map_or(0, |m| m.amount);
            let delta = refunded_total - already;
            if delta <= 0 {
                return Ok(Outcome::Duplicate(format!(
                    "refunds up to {refunded_total} are already recorded"
                )));
            }
            let amount = Currency::parse(&currency.to_ascii_uppercase())
                .ok()
                .and_then(|c| Money::new(delta, c).ok());
            let Some(amount) = amount else {
                return Ok(Outcome::Ignored(format!(
                    "unusable refund currency {currency}"
                )));
            };
            PaymentCommand::Refund {
                provider_event_id: Some(provider_event_id),
                // One id per cumulative state of the charge: a redelivery of the same state
                // is the same refund.
                refund_id: format!("{charge_id}:{refunded_total}"),
                amount,
            }
        }
    };
    let Some(metadata) = caused_by_payment(bus.pool(), &id)
        .await
        .map_err(CommandError::from_sqlx)?
    else {
        return Err(CommandError::Rejected(PaymentError::NotFound));
    };
    match bus.execute::<Payment>(&id, command, &metadata).await {
        Ok(committed) if committed.events == 0 => Ok(Outcome::Duplicate(format!(
            "event {event_id} was already applied to payment {id}"
        ))),
        Ok(committed) => Ok(Outcome::Applied {
            payment_id: payment_id.0,
            position: committed.position,
        }),
        Err(error @ CommandError::Rejected(PaymentError::NotFound)) => Err(error),
        // The provider's word cannot be refused; what the aggregate will not take changes
        // nothing and is acknowledged (e.g. a failure after success).
        Err(CommandError::Rejected(reason)) => {
            tracing::warn!(event_id, payment = %id, %reason, "Stripe event changes nothing");
            Ok(Outcome::Refused(reason.to_string()))
        }
        Err(error) => Err(error),
    }
}
