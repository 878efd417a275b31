//! Stripe through async-stripe: one attempt per call, under the caller's idempotency key.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use domain::{Money, Owner, PaymentId};
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::PaymentIntent;
use stripe_core::payment_intent::{
    CancelPaymentIntent, CancelPaymentIntentCancellationReason, CreatePaymentIntent,
    ListPaymentIntent,
};
use stripe_core::refund::CreateRefund;
use stripe_types::{Currency, Expandable};

use super::{Intent, IntentRequest, PaymentGateway, PaymentGatewayError, ProviderIntent};

/// Stripe's largest page.
const PAGE_SIZE: i64 = 100;

/// The real provider. Retries are deliberately not async-stripe's: its retry strategies either
/// invent a new idempotency key per call or send none, so [`super::Resilient`] loops with
/// [`RequestStrategy::Idempotent`] and the same key instead.
pub struct StripeGateway {
    client: Client,
}

impl StripeGateway {
    /// A client for `secret_key`; `base_url` points it at a fake server in tests (default
    /// `https://api.stripe.com/`); `timeout` bounds each attempt.
    ///
    /// # Errors
    /// [`PaymentGatewayError::Unavailable`] when the client cannot be built (bad URL, TLS set-up).
    pub fn new(
        secret_key: &str,
        base_url: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, PaymentGatewayError> {
        let mut builder = ClientBuilder::new(secret_key).timeout(timeout);
        if let Some(url) = base_url {
            builder = builder.url(url);
        }
        let client = builder.build().map_err(map_error)?;
        Ok(Self { client })
    }
}

#[async_trait::async_trait]
impl PaymentGateway for StripeGateway {
    fn provider(&self) -> &'static str {
        "stripe"
    }

    async fn create_intent(&self, request: &IntentRequest) -> Result<Intent, PaymentGatewayError> {
        let mut metadata =
            HashMap::from([("payment_id".to_owned(), request.payment_id.to_string())]);
        match request.owner {
            Owner::Order(id) => metadata.insert("order_id".to_owned(), id.to_string()),
            Owner::Booking(id) => metadata.insert("booking_id".to_owned(), id.to_string()),
        };
        let intent = CreatePaymentIntent::new(request.amount.amount, currency(request.amount))
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&super::create_key(request.payment_id))?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        Ok(Intent {
            id: intent.id.as_str().to_owned(),
            client_secret: intent.client_secret,
        })
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<(), PaymentGatewayError> {
        CancelPaymentIntent::new(intent_id)
            .cancellation_reason(CancelPaymentIntentCancellationReason::Abandoned)
            .customize()
            .request_strategy(idempotent(&super::cancel_key(intent_id))?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        refund_key: &str,
    ) -> Result<String, PaymentGatewayError> {
        let refund = CreateRefund::new()
            .payment_intent(intent_id)
            .amount(amount.amount)
            .customize()
            .request_strategy(idempotent(&super::refund_key(refund_key))?)
            .send(&self.client)
            .await
            .map_err(map_error)?;
        Ok(refund.id.as_str().to_owned())
    }

    /// Pages through `GET /v1/payment_intents` with each intent's latest charge expanded: the
    /// refunded amount lives on the charge, and expanding it costs no extra request.
    async fn list_intents(&self) -> Result<Vec<ProviderIntent>, PaymentGatewayError> {
        let mut intents = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = ListPaymentIntent::new()
                .limit(PAGE_SIZE)
                .expand(vec!["data.latest_charge".to_owned()]);
            if let Some(last) = &after {
                request = request.starting_after(last.as_str());
            }
            let page = request.send(&self.client).await.map_err(map_error)?;
            for intent in &page.data {
                intents.push(provider_intent(intent)?);
            }
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.as_str().to_owned()),
                _ => return Ok(intents),
            }
        }
    }
}

fn provider_intent(intent: &PaymentIntent) -> Result<ProviderIntent, PaymentGatewayError> {
    let id = intent.id.as_str().to_owned();
    let code = intent.currency.to_string().to_ascii_uppercase();
    let amount = domain::Currency::parse(&code)
        .and_then(|currency| Money::new(intent.amount, currency))
        .map_err(|e| PaymentGatewayError::Declined(format!("intent {id}: {e}")))?;
    // Only a charge that was paid can carry refunds; an unexpanded one would hide them.
    let amount_refunded = match &intent.latest_charge {
        None => 0,
        Some(Expandable::Object(charge)) => charge.amount_refunded,
        Some(Expandable::Id(charge)) => {
            return Err(PaymentGatewayError::Unavailable(format!(
                "intent {id}: charge {} came back unexpanded",
                charge.as_str()
            )));
        }
    };
    let payment_id = intent
        .metadata
        .get("payment_id")
        .and_then(|raw| raw.parse().ok())
        .map(PaymentId);
    Ok(ProviderIntent {
        id,
        status: intent.status.as_str().to_owned(),
        amount,
        amount_refunded,
        payment_id,
    })
}

/// Stripe's currency codes are the ISO codes in lower case.
fn currency(amount: Money) -> Currency {
    let code = amount.currency.as_str().to_ascii_lowercase();
    match Currency::from_str(&code) {
        Ok(currency) => currency,
        Err(never) => match never {},
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy, PaymentGatewayError> {
    let key = IdempotencyKey::new(key)
        .map_err(|e| PaymentGatewayError::Declined(format!("unusable idempotency key: {e}")))?;
    Ok(RequestStrategy::Idempotent(key))
}

/// What the Stripe client reports for an answer it cannot decode, mapped as [`map_error`]
/// maps it; the simulated gateway's chaos uses it so a malformed answer fails the same way.
pub(super) fn undecodable_body(body: &str) -> PaymentGatewayError {
    let message = match serde_json::from_str::<serde_json::Value>(body) {
        Err(error) => error.to_string(),
        Ok(_) => "an unexpected body".to_owned(),
    };
    map_error(StripeError::JSONDeserialize(message))
}

/// A 4xx is Stripe's considered refusal, except 409 (a concurrent request with the same key)
/// and 429 (rate limit), which a later attempt with the same key can get past.
fn map_error(error: StripeError) -> PaymentGatewayError {
    match error {
        StripeError::Stripe(errors, status)
            if (400..500).contains(&status) && status != 409 && status != 429 =>
        {
            let message = errors
                .message
                .clone()
                .unwrap_or_else(|| format!("stripe answered {status}"));
            PaymentGatewayError::Declined(message)
        }
        StripeError::Stripe(errors, status) => PaymentGatewayError::Unavailable(format!(
            "stripe answered {status}: {}",
            errors.message.as_deref().unwrap_or("no message")
        )),
        other => PaymentGatewayError::Unavailable(other.to_string()),
    }
}
