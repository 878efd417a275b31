//! A provider that settles intents locally and tells the service by correctly signed Stripe
//! webhooks, so the whole payment flow runs with no Stripe account.
//!
//! Outcomes are chosen by amount, like Stripe's test cards: minor units ending in `02`
//! (e.g. 1502) fail, every other amount succeeds. State lives in memory only: after a restart
//! the simulation forgets its intents, which is acceptable for a laptop and for tests.
//!
//! With [`Chaos`] on, a share of calls fails before it has any effect: refused, hung, or
//! answered with an undecodable body (see [`super::chaos`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::{Money, Owner, PaymentId};
use serde_json::{Value, json};
use stripe_webhook::Webhook;

use feed::trace_context;

use super::chaos::Chaos;
use super::{Intent, IntentRequest, PaymentGateway, PaymentGatewayError, ProviderIntent};

/// Deliveries of one event before it is given up and logged (about 15 s in all).
const DELIVERY_ATTEMPTS: u32 = 12;

/// First pause between deliveries, doubling up to [`MAX_REDELIVERY_DELAY`]. Short because the
/// usual refusal is a 503 for a payment the saga records a few milliseconds later.
const FIRST_REDELIVERY_DELAY: Duration = Duration::from_millis(5);

/// Longest pause between deliveries.
const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(5);

/// The local stand-in for Stripe. Idempotent like Stripe: creating the intent of a known
/// payment again returns it without settling it twice, and a repeated refund key returns the
/// first refund.
#[derive(Clone)]
pub struct SimulatedGateway {
    shared: Arc<Shared>,
    chaos: Chaos,
}

struct Shared {
    webhook_url: String,
    webhook_secret: String,
    delay: Duration,
    http: reqwest::Client,
    intents: Mutex<HashMap<String, SimulatedIntent>>,
}

struct SimulatedIntent {
    payment_id: PaymentId,
    owner: Owner,
    amount: Money,
    status: &'static str,
    settled: bool,
    refunded: i64,
    refunds: HashMap<String, String>,
}

impl SimulatedGateway {
    /// Delivers events to `webhook_url` signed with `webhook_secret`; an intent settles
    /// `delay` after it is created.
    pub fn new(webhook_url: String, webhook_secret: String, delay: Duration) -> Self {
        let shared = Shared {
            webhook_url,
            webhook_secret,
            delay,
            http: reqwest::Client::new(),
            intents: Mutex::new(HashMap::new()),
        };
        Self {
            shared: Arc::new(shared),
            chaos: Chaos::OFF,
        }
    }

    /// The same provider, failing a share of calls as `chaos` says.
    #[must_use]
    pub fn with_chaos(mut self, chaos: Chaos) -> Self {
        self.chaos = chaos;
        self
    }

    /// Fails this call as the drawn fault says, before it changes anything.
    async fn inject_fault(&self, operation: &'static str) -> Result<(), PaymentGatewayError> {
        match self.chaos.draw() {
            Some(fault) => super::chaos::fail(fault, operation).await,
            None => Ok(()),
        }
    }
}

impl Shared {
    fn intents(&self) -> std::sync::MutexGuard<'_, HashMap<String, SimulatedIntent>> {
        // The map stays consistent between statements, so a panicked holder left nothing
        // half-written.
        self.intents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves a pending intent to its outcome and returns the event to deliver; `None` when it
    /// was cancelled or settled meanwhile.
    fn settle(&self, intent_id: &str) -> Option<String> {
        let mut intents = self.intents();
        let intent = intents.get_mut(intent_id)?;
        if intent.settled || intent.status == "canceled" {
            return None;
        }
        intent.settled = true;
        // A failed attempt leaves a Stripe intent waiting for another payment method.
        let fails = intent.amount.amount % 100 == 2;
        if !fails {
            intent.status = "succeeded";
        }
        let mut object = intent_json(intent_id, intent);
        if fails {
            object["last_payment_error"] = json!({
                "type": "card_error", "code": "card_declined",
                "message": "Your card was declined (simulated)."
            });
            return Some(event("payment_intent.payment_failed", object));
        }
        Some(event("payment_intent.succeeded", object))
    }

    /// Posts `body` until the service answers 2xx, re-signing each attempt so the timestamp
    /// stays inside the 5-minute tolerance. `traceparent` (the span of the call that caused
    /// the event) goes along as a header, so the webhook's request continues the payment's
    /// trace; Stripe itself sends none.
    async fn deliver(&self, body: String, traceparent: Option<String>) {
        for attempt in 0..DELIVERY_ATTEMPTS {
            let signature = Webhook::generate_test_header(&body, &self.webhook_secret, None);
            let mut request = self
                .http
                .post(&self.webhook_url)
                .header("content-type", "application/json")
                .header("stripe-signature", signature);
            if let Some(traceparent) = &traceparent {
                request = request.header(trace_context::TRACEPARENT, traceparent);
            }
            let sent = request.body(body.clone()).send().await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::warn!(attempt, status = %response.status(), "simulated webhook refused");
                }
                Err(error) => tracing::warn!(attempt, %error, "simulated webhook not delivered"),
            }
            let pause = FIRST_REDELIVERY_DELAY.saturating_mul(1 << attempt.min(16));
            tokio::time::sleep(pause.min(MAX_REDELIVERY_DELAY)).await;
        }
        tracing::error!(url = %self.webhook_url, body, "simulated webhook given up");
    }
}

fn spawn_delivery(shared: &Arc<Shared>, body: String) {
    let shared = Arc::clone(shared);
    let traceparent = trace_context::current_traceparent();
    tokio::spawn(async move { shared.deliver(body, traceparent).await });
}

/// Every field async-stripe requires of a PaymentIntent, plus the metadata the webhook
/// handler maps back to the Payment.
fn intent_json(id: &str, intent: &SimulatedIntent) -> Value {
    let (owner_key, owner_id) = match intent.owner {
        Owner::Order(id) => ("order_id", id.to_string()),
        Owner::Booking(id) => ("booking_id", id.to_string()),
    };
    let received = if intent.status == "succeeded" {
        intent.amount.amount
    } else {
        0
    };
    json!({
        "id": id, "object": "payment_intent", "amount": intent.amount.amount,
        "amount_capturable": 0, "amount_received": received, "capture_method": "automatic",
        "confirmation_method": "automatic", "created": chrono::Utc::now().timestamp(),
        "currency": intent.amount.currency.as_str().to_ascii_lowercase(), "livemode": false,
        "metadata": {"payment_id": intent.payment_id.to_string(), owner_key: owner_id},
        "payment_method_types": ["card"], "status": intent.status
    })
}

/// A charge after refunds; `amount_refunded` is cumulative, as Stripe sends it.
fn charge_json(intent_id: &str, intent: &SimulatedIntent) -> Value {
    json!({
        "id": format!("ch_{}", intent_id.trim_start_matches("pi_")), "object": "charge",
        "amount": intent.amount.amount, "amount_captured": intent.amount.amount,
        "amount_refunded": intent.refunded, "billing_details": {}, "captured": true,
        "created": chrono::Utc::now().timestamp(),
        "currency": intent.amount.currency.as_str().to_ascii_lowercase(), "disputed": false,
        "livemode": false, "metadata": {"payment_id": intent.payment_id.to_string()},
        "paid": true, "refunded": intent.refunded == intent.amount.amount,
        "status": "succeeded", "payment_intent": intent_id
    })
}

/// An event with an id unique per delivery, as Stripe's are.
fn event(kind: &str, object: Value) -> String {
    json!({
        "id": format!("evt_sim_{}", uuid::Uuid::new_v4().simple()), "object": "event",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "type": kind, "data": {"object": object}
    })
    .to_string()
}

#[async_trait::async_trait]
impl PaymentGateway for SimulatedGateway {
    fn provider(&self) -> &'static str {
        "simulated"
    }

    async fn create_intent(&self, request: &IntentRequest) -> Result<Intent, PaymentGatewayError> {
        self.inject_fault("create_intent").await?;
        let id = format!("pi_sim_{}", request.payment_id.0.simple());
        let intent = Intent {
            client_secret: Some(format!("{id}_secret_sim")),
            id: id.clone(),
        };
        let known = {
            let mut intents = self.shared.intents();
            let known = intents.contains_key(&id);
            intents.entry(id.clone()).or_insert(SimulatedIntent {
                payment_id: request.payment_id,
                owner: request.owner,
                amount: request.amount,
                status: "requires_payment_method",
                settled: false,
                refunded: 0,
                refunds: HashMap::new(),
            });
            known
        };
        if !known {
            let shared = Arc::clone(&self.shared);
            let traceparent = trace_context::current_traceparent();
            tokio::spawn(async move {
                tokio::time::sleep(shared.delay).await;
                if let Some(body) = shared.settle(&id) {
                    shared.deliver(body, traceparent).await;
                }
            });
        }
        Ok(intent)
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<(), PaymentGatewayError> {
        self.inject_fault("cancel_intent").await?;
        let body = {
            let mut intents = self.shared.intents();
            let Some(intent) = intents.get_mut(intent_id) else {
                return Err(PaymentGatewayError::Declined(format!(
                    "no such intent {intent_id}"
                )));
            };
            match intent.status {
                "canceled" => return Ok(()),
                "succeeded" => {
                    return Err(PaymentGatewayError::Declined(
                        "a succeeded intent cannot be canceled".to_owned(),
                    ));
                }
                _ => intent.status = "canceled",
            }
            event("payment_intent.canceled", intent_json(intent_id, intent))
        };
        spawn_delivery(&self.shared, body);
        Ok(())
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        refund_key: &str,
    ) -> Result<String, PaymentGatewayError> {
        self.inject_fault("refund").await?;
        let (refund_id, body) = {
            let mut intents = self.shared.intents();
            let Some(intent) = intents.get_mut(intent_id) else {
                return Err(PaymentGatewayError::Declined(format!(
                    "no such intent {intent_id}"
                )));
            };
            if let Some(refund_id) = intent.refunds.get(refund_key) {
                return Ok(refund_id.clone());
            }
            if intent.status != "succeeded" {
                return Err(PaymentGatewayError::Declined(
                    "the intent is not paid".to_owned(),
                ));
            }
            if amount.currency != intent.amount.currency
                || intent.refunded + amount.amount > intent.amount.amount
            {
                return Err(PaymentGatewayError::Declined(
                    "the refund exceeds what was paid".to_owned(),
                ));
            }
            intent.refunded += amount.amount;
            let refund_id = format!("re_sim_{}", uuid::Uuid::new_v4().simple());
            intent
                .refunds
                .insert(refund_key.to_owned(), refund_id.clone());
            let body = event("charge.refunded", charge_json(intent_id, intent));
            (refund_id, body)
        };
        spawn_delivery(&self.shared, body);
        Ok(refund_id)
    }

    async fn list_intents(&self) -> Result<Vec<ProviderIntent>, PaymentGatewayError> {
        self.inject_fault("list_intents").await?;
        let intents = self.shared.intents();
        let mut listed: Vec<ProviderIntent> = intents
            .iter()
            .map(|(id, intent)| ProviderIntent {
                id: id.clone(),
                status: intent.status.to_owned(),
                amount: intent.amount,
                amount_refunded: intent.refunded,
                payment_id: Some(intent.payment_id),
            })
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listed)
    }
}
