//! A stateful Stripe stand-in on a free port, for driving the real async-stripe client.
//!
//! It keeps PaymentIntents and refunds in memory with the Stripe semantics Reserva relies on:
//!
//! - `POST /v1/payment_intents` creates `pi_fake_<n>` (`requires_payment_method`) from the
//!   form's `amount`, `currency` and `metadata[…]`.
//! - `POST /v1/payment_intents/{id}/cancel` cancels it; a canceled one stays canceled (200), a
//!   succeeded one answers 400 `payment_intent_unexpected_state`.
//! - `POST /v1/refunds` (`payment_intent`, optional `amount`) creates `re_fake_<n>`; 400 when
//!   the intent is not succeeded or the amount exceeds what is left to refund.
//! - `GET /v1/payment_intents` (newest first; `limit`, `starting_after`, `has_more`;
//!   `expand[]=data.latest_charge`) and `GET /v1/payment_intents/{id}` (`expand[]=latest_charge`).
//!
//! A POST repeated with the same `Idempotency-Key` and the same parameters replays the first
//! successful answer (with `Idempotent-Replayed: true`) and changes nothing; the same key with
//! other parameters is a 400 `idempotency_error`. Unlike Stripe, error answers are not stored,
//! so a retry after a scripted failure reaches the fake again.
//!
//! The test plays the customer: [`FakeStripe::succeed`] and [`FakeStripe::fail`] settle an
//! intent and return the webhook body Stripe would send, ready for
//! [`crate::TestApp::post_stripe_webhook`]. [`FakeStripe::then_answer`] scripts the next
//! answers (failures) whatever the path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// One request the fake received; the query string and the form body are decoded into pairs.
#[derive(Debug, Clone)]
pub struct Received {
    /// `GET`, `POST`.
    pub method: String,
    /// E.g. `/v1/payment_intents`.
    pub path: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// Decoded query pairs (`expand[0]`, `limit`, …).
    pub query: HashMap<String, String>,
    /// Decoded form pairs (`amount`, `metadata[payment_id]`, …).
    pub form: HashMap<String, String>,
}

/// A PaymentIntent as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeIntent {
    /// `pi_fake_<n>`.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// Lower-case ISO code, as Stripe spells it.
    pub currency: String,
    /// The form's `metadata[…]`.
    pub metadata: BTreeMap<String, String>,
    /// Stripe's status string.
    pub status: String,
    /// Refunded so far (cumulative, as the charge reports it).
    pub amount_refunded: i64,
    /// Refund ids, oldest first.
    pub refunds: Vec<String>,
    /// `cancellation_reason` of the cancel request.
    pub cancellation_reason: Option<String>,
    /// Set by [`FakeStripe::fail`] until the intent succeeds.
    pub last_payment_error: Option<String>,
}

/// The Stripe stand-in. Dropping it stops the server.
pub struct FakeStripe {
    /// Base URL with a trailing slash, for `StripeGateway::new(key, Some(&fake.uri), …)` or
    /// `GatewaySettings::Stripe { api_base: Some(fake.uri.clone()), … }`.
    pub uri: String,
    state: Arc<Mutex<State>>,
    server: ServerHandle,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Answers given before the stateful behaviour, whatever the path.
    answers: VecDeque<(u16, Value)>,
    /// Creation order; listed newest first.
    intents: Vec<FakeIntent>,
    replays: HashMap<String, Replay>,
    refunds: usize,
    events: usize,
}

/// The first successful answer to an idempotency key and what it was asked.
struct Replay {
    method: String,
    path: String,
    form: HashMap<String, String>,
    body: Value,
}

type Answer = (u16, Value);

impl FakeStripe {
    /// Starts the fake on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the fake Stripe");
        let uri = format!("http://{}/", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            uri,
            state,
            server: handle,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The next request, whatever its path, is answered `status` with `body` and changes
    /// nothing; calls queue up.
    pub fn then_answer(&self, status: u16, body: Value) {
        self.state().answers.push_back((status, body));
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.state().received.clone()
    }

    /// Every intent, oldest first.
    pub fn intents(&self) -> Vec<FakeIntent> {
        self.state().intents.clone()
    }

    /// One intent, if the fake has it.
    pub fn intent(&self, intent_id: &str) -> Option<FakeIntent> {
        self.state()
            .intents
            .iter()
            .find(|i| i.id == intent_id)
            .cloned()
    }

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

impl Drop for FakeStripe {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide its failure behind poison.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[track_caller]
fn find<'a>(intents: &'a mut [FakeIntent], intent_id: &str) -> &'a mut FakeIntent {
    match intents.iter_mut().find(|i| i.id == intent_id) {
        Some(intent) => intent,
        None => panic!("the fake Stripe has no intent {intent_id}"),
    }
}

async fn answer(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let received = Received {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        idempotency_key: request
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        query: decode_pairs(request.query_string()),
        form: decode_pairs(&String::from_utf8_lossy(&body)),
    };
    let mut state = lock(&state);
    state.received.push(received.clone());
    let (status, body, replayed) = match state.answers.pop_front() {
        Some((status, body)) => (status, body, false),
        None => idempotent(&mut state, &received),
    };
    let mut response = HttpResponse::build(StatusCode::from_u16(status).unwrap_or_default());
    if replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    response.json(body)
}

/// Replays a key's first successful answer, or routes the request and remembers a success.
fn idempotent(state: &mut State, request: &Received) -> (u16, Value, bool) {
    let key = request
        .idempotency_key
        .as_ref()
        .filter(|_| request.method == "POST");
    if let Some(replay) = key.and_then(|k| state.replays.get(k)) {
        if replay.method == request.method
            && replay.path == request.path
            && replay.form == request.form
        {
            return (200, replay.body.clone(), true);
        }
        let message = "Keys for idempotent requests can only be used with the same \
                       parameters they were first used with.";
        return (400, error("idempotency_error", None, message), false);
    }
    let (status, body) = route(state, request);
    if let Some(key) = key
        && status == 200
    {
        let replay = Replay {
            method: request.method.clone(),
            path: request.path.clone(),
            form: request.form.clone(),
            body: body.clone(),
        };
        state.replays.insert(key.clone(), replay);
    }
    (status, body, false)
}

fn route(state: &mut State, request: &Received) -> Answer {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => create_intent(state, &request.form),
        ("GET", ["v1", "payment_intents"]) => list_intents(state, &request.query),
        ("GET", ["v1", "payment_intents", id]) => {
            let expand = expands(&request.query, "latest_charge");
            with_intent(state, id, |intent| (200, intent_json(intent, expand)))
        }
        ("POST", ["v1", "payment_intents", id, "cancel"]) => {
            let reason = request.form.get("cancellation_reason").cloned();
            with_intent(state, id, |intent| cancel(intent, reason))
        }
        ("POST", ["v1", "refunds"]) => refund(state, &request.form),
        _ => (
            404,
            error(
                "invalid_request_error",
                None,
                &format!(
                    "Unrecognized request URL ({} {})",
                    request.method, request.path
                ),
            ),
        ),
    }
}

fn create_intent(state: &mut State, form: &HashMap<String, String>) -> Answer {
    let (Some(amount), Some(currency)) = (
        form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        form.get("currency"),
    ) else {
        let message = "amount and currency are required";
        return (
            400,
            error("invalid_request_error", Some("parameter_missing"), message),
        );
    };
    let metadata = form
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_owned(), v.clone()))
        })
        .collect();
    let intent = FakeIntent {
        id: format!("pi_fake_{}", state.intents.len() + 1),
        amount,
        currency: currency.to_ascii_lowercase(),
        metadata,
        status: "requires_payment_method".to_owned(),
        amount_refunded: 0,
        refunds: Vec::new(),
        cancellation_reason: None,
        last_payment_error: None,
    };
    let body = intent_json(&intent, false);
    state.intents.push(intent);
    (200, body)
}

fn with_intent(
    state: &mut State,
    id: &str,
    then: impl FnOnce(&mut FakeIntent) -> Answer,
) -> Answer {
    match state.intents.iter_mut().find(|i| i.id == id) {
        Some(intent) => then(intent),
        None => missing("payment_intent", id),
    }
}

fn cancel(intent: &mut FakeIntent, reason: Option<String>) -> Answer {
    match intent.status.as_str() {
        "succeeded" => {
            let message = format!(
                "You cannot cancel this PaymentIntent because it has a status of {}.",
                intent.status
            );
            (400, unexpected_state(&message))
        }
        "canceled" => (200, intent_json(intent, false)),
        _ => {
            intent.status = "canceled".to_owned();
            intent.cancellation_reason = reason;
            (200, intent_json(intent, false))
        }
    }
}

fn refund(state: &mut State, form: &HashMap<String, String>) -> Answer {
    let Some(intent_id) = form.get("payment_intent") else {
        let message = "a payment_intent is required";
        return (
            400,
            error("invalid_request_error", Some("parameter_missing"), message),
        );
    };
    let number = state.refunds + 1;
    let Some(intent) = state.intents.iter_mut().find(|i| &i.id == intent_id) else {
        return missing("payment_intent", intent_id);
    };
    if intent.status != "succeeded" {
        let message = format!(
            "This PaymentIntent ({intent_id}) does not have a successful charge to refund."
        );
        return (400, unexpected_state(&message));
    }
    let left = intent.amount - intent.amount_refunded;
    let amount = match form.get("amount").map(|a| a.parse::<i64>()) {
        None => left,
        Some(Ok(amount)) if amount > 0 => amount,
        Some(_) => {
            let message = "amount must be a positive integer";
            return (
                400,
                error(
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    message,
                ),
            );
        }
    };
    if amount > left {
        let message = format!(
            "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
        );
        return (
            400,
            error("invalid_request_error", Some("amount_too_large"), &message),
        );
    }
    let id = format!("re_fake_{number}");
    intent.amount_refunded += amount;
    intent.refunds.push(id.clone());
    let body = json!({
        "id": id, "object": "refund", "amount": amount, "created": now(),
        "currency": intent.currency, "payment_intent": intent.id,
        "charge": charge_id(intent), "metadata": {}, "status": "succeeded"
    });
    state.refunds = number;
    (200, body)
}

fn list_intents(state: &State, query: &HashMap<String, String>) -> Answer {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let newest_first: Vec<&FakeIntent> = state.intents.iter().rev().collect();
    let start = match query.get("starting_after") {
        None => 0,
        Some(after) => match newest_first.iter().position(|i| &i.id == after) {
            Some(index) => index + 1,
            None => return missing("payment_intent", after),
        },
    };
    let expand = expands(query, "data.latest_charge");
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(limit)
        .map(|intent| intent_json(intent, expand))
        .collect();
    let has_more = start + page.len() < newest_first.len();
    let body = json!({"object": "list", "url": "/v1/payment_intents", "has_more": has_more,
        "data": page});
    (200, body)
}

/// Whether `expand[…]` asks for `field`.
fn expands(query: &HashMap<String, String>, field: &str) -> bool {
    query
        .iter()
        .any(|(k, v)| k.starts_with("expand[") && v == field)
}

/// A paid intent has one charge, named after it.
fn charge_id(intent: &FakeIntent) -> Option<String> {
    (intent.status == "succeeded").then(|| format!("ch_{}", intent.id.trim_start_matches("pi_")))
}

/// Every field async-stripe requires of a PaymentIntent; `latest_charge` as an id, or the
/// whole charge when `expand_charge`.
fn intent_json(intent: &FakeIntent, expand_charge: bool) -> Value {
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
fn charge_json(intent: &FakeIntent) -> Value {
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
fn event(state: &mut State, kind: &str, object: Value) -> String {
    state.events += 1;
    json!({
        "id": format!("evt_fake_{}", state.events), "object": "event", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": kind, "data": {"object": object}
    })
    .to_string()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Stripe's error body.
fn error(kind: &str, code: Option<&str>, message: &str) -> Value {
    json!({"error": {"type": kind, "code": code, "message": message}})
}

fn unexpected_state(message: &str) -> Value {
    error(
        "invalid_request_error",
        Some("payment_intent_unexpected_state"),
        message,
    )
}

fn missing(kind: &str, id: &str) -> Answer {
    let message = format!("No such {kind}: '{id}'");
    (
        404,
        error("invalid_request_error", Some("resource_missing"), &message),
    )
}

/// `a=1&metadata%5Bk%5D=v+w` → pairs, percent- and plus-decoded.
fn decode_pairs(encoded: &str) -> HashMap<String, String> {
    encoded
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
