//! Duplicate Stripe webhooks, forged and signed as Stripe signs them.
//!
//! The simulated gateway signs its deliveries with the service's
//! `RESERVA_STRIPE__WEBHOOK_SECRET`; given the same secret, the driver can send an event about
//! a payment again — as Stripe does when it did not see a 2xx in time — and check that the
//! service applies it once. The body carries every field async-stripe requires of a
//! PaymentIntent (the service parses it with async-stripe-webhook), plus the metadata the
//! service maps back to the Payment.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, body: &str, timestamp: i64) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let digest = hex::encode(mac.finalize().into_bytes());
    format!("t={timestamp},v1={digest}")
}

/// What the driver knows of a payment, from `GET /api/v1/payments/{id}`.
pub struct KnownPayment<'a> {
    /// The Payment aggregate.
    pub payment_id: &'a str,
    /// `order` or `booking`.
    pub owner_kind: &'a str,
    /// The order or booking.
    pub owner_id: &'a str,
    /// `pi_…`.
    pub intent_id: &'a str,
    /// Minor units.
    pub amount: i64,
    /// ISO code, any case.
    pub currency: &'a str,
}

/// A `payment_intent.succeeded` (`paid`) or `payment_intent.payment_failed` event about
/// `payment`, with a fresh event id.
pub fn intent_event(payment: &KnownPayment<'_>, paid: bool) -> String {
    let now = chrono::Utc::now().timestamp();
    let owner_key = format!("{}_id", payment.owner_kind);
    let mut object = json!({
        "id": payment.intent_id, "object": "payment_intent", "amount": payment.amount,
        "amount_capturable": 0, "amount_received": if paid { payment.amount } else { 0 },
        "capture_method": "automatic", "confirmation_method": "automatic", "created": now,
        "currency": payment.currency.to_ascii_lowercase(), "livemode": false,
        "metadata": {"payment_id": payment.payment_id, owner_key: payment.owner_id},
        "payment_method_types": ["card"],
        "status": if paid { "succeeded" } else { "requires_payment_method" }
    });
    if !paid {
        object["last_payment_error"] = json!({
            "type": "card_error", "code": "card_declined",
            "message": "Your card was declined (duplicate from the load driver)."
        });
    }
    let kind = if paid {
        "payment_intent.succeeded"
    } else {
        "payment_intent.payment_failed"
    };
    json!({
        "id": format!("evt_storm_{}", uuid::Uuid::new_v4().simple()), "object": "event",
        "created": now, "livemode": false, "pending_webhooks": 1, "type": kind,
        "data": {"object": object}
    })
    .to_string()
}

/// Reads what [`intent_event`] needs from a payment's JSON; `None` if a field is missing.
pub fn known_payment(payment: &Value) -> Option<KnownPayment<'_>> {
    Some(KnownPayment {
        payment_id: payment["id"].as_str()?,
        owner_kind: payment["owner"]["kind"].as_str()?,
        owner_id: payment["owner"]["id"].as_str()?,
        intent_id: payment["provider_intent_id"].as_str()?,
        amount: payment["amount"]["amount"].as_i64()?,
        currency: payment["amount"]["currency"].as_str()?,
    })
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn the_signature_is_stripes_scheme() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently with openssl.
        let header = signature("whsec_test", "{}", 1_700_000_000);
        assert_eq!(
            header,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
