//! The customer's moves at Stripe as webhook bodies, and the JSON of intents and charges.

use super::{FakeIntent, FakeStripe, State, find};
use serde_json::{Value, json};

impl FakeStripe {
    /// The customer pays: the intent becomes `succeeded`. Returns the
    /// `payment_intent.succeeded` event body to post to the service.
    ///
    /// # Panics
    /// When the intent is unknown or canceled.
    #[track_caller]
    pub fn succeed(&self, intent_id: &str) -> String {
        let mut state = self.state();
        let intent = find(&mut state.intents, intent_id);
        assert_ne!(intent.status, "canceled", "{intent_id} is canceled");
        intent.status = "succeeded".to_owned();
        intent.last_payment_error = None;
        let object = intent_json(intent, false);
        event(&mut state, "payment_intent.succeeded", object)
    }

    /// The customer's payment fails: the intent waits for another payment method, with
    /// `last_payment_error` set. Returns the `payment_intent.payment_failed` event body.
    ///
    /// # Panics
    /// When the intent is unknown, canceled or succeeded.
    #[track_caller]
    pub fn fail(&self, intent_id: &str) -> String {
        let mut state = self.state();
        let intent = find(&mut state.intents, intent_id);
        assert!(
            intent.status != "canceled" && intent.status != "succeeded",
            "{intent_id} is {}",
            intent.status
        );
        intent.status = "requires_payment_method".to_owned();
        intent.last_payment_error = Some("Your card was declined.".to_owned());
        let object = intent_json(intent, false);
        event(&mut state, "payment_intent.payment_failed", object)
    }

    /// The `payment_intent.canceled` event body of a canceled intent.
    ///
    /// # Panics
    /// When the intent is unknown or not canceled.
    #[track_caller]
    pub fn canceled_event(&self, intent_id: &str) -> String {
        let mut state = self.state();
        let intent = find(&mut state.intents, intent_id);
        assert_eq!(intent.status, "canceled", "{intent_id} is not canceled");
        let object = intent_json(intent, false);
        event(&mut state, "payment_intent.canceled", object)
    }

    /// The `charge.refunded` event body for what has been refunded of the intent so far
    /// (the charge's `amount_refunded` is cumulative, as Stripe sends it).
    ///
    /// # Panics
    /// When the intent is unknown or nothing was refunded.
    #[track_caller]
    pub fn refund_event(&self, intent_id: &str) -> String {
        let mut state = self.state();
        let intent = find(&mut state.intents, intent_id);
        assert!(
            intent.amount_refunded > 0,
            "nothing refunded on {intent_id}"
        );
        let object = charge_json(intent);
        event(&mut state, "charge.refunded", object)
    }
}

/// A paid intent has one charge, named after it.
pub(super) fn charge_id(intent: &FakeIntent) -> Option<String> {
    (intent.status == "succeeded").then(|| format!("ch_{}", intent.id.trim_start_matches("pi_")))
}

/// Every field async-stripe requires of a PaymentIntent; `latest_charge` as an id, or the
/// whole charge when `expand_charge`.
pub(super) fn intent_json(intent: &FakeIntent, expand_charge: bool) -> Value {
    let paid = intent.status == "succeeded";
    let latest_charge = match charge_id(intent) {
        Some(_) if expand_charge => charge_json(intent),
        Some(id) => Value::String(id),
        None => Value::Null,
    };
    let last_payment_error = intent
        .last_payment_error
        .as_ref()
        .map(|message| json!({"type": "card_error", "code": "card_declined", "message": message}));
    json!({
        "id": intent.id, "object": "payment_intent", "amount": intent.amount,
        "amount_capturable": 0, "amount_received": if paid { intent.amount } else { 0 },
        "capture_method": "automatic", "client_secret": format!("{}_secret_fake", intent.id),
        "confirmation_method": "automatic", "created": now(), "currency": intent.currency,
        "livemode": false, "metadata": intent.metadata, "payment_method_types": ["card"],
        "status": intent.status, "latest_charge": latest_charge,
        "cancellation_reason": intent.cancellation_reason,
        "last_payment_error": last_payment_error
    })
}

/// The intent's charge; `amount_refunded` is cumulative.
pub(super) fn charge_json(intent: &FakeIntent) -> Value {
    json!({
        "id": charge_id(intent), "object": "charge", "amount": intent.amount,
        "amount_captured": intent.amount, "amount_refunded": intent.amount_refunded,
        "billing_details": {}, "captured": true, "created": now(),
        "currency": intent.currency, "disputed": false, "livemode": false,
        "metadata": intent.metadata, "paid": true,
        "refunded": intent.amount_refunded == intent.amount, "status": "succeeded",
        "payment_intent": intent.id
    })
}

/// A webhook event body with a fresh `evt_fake_<n>` id.
pub(super) fn event(state: &mut State, kind: &str, object: Value) -> String {
    state.events += 1;
    json!({
        "id": format!("evt_fake_{}", state.events), "object": "event", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": kind, "data": {"object": object}
    })
    .to_string()
}

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
