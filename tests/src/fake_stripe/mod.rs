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
//! answers (failures) whatever the path; [`FakeStripe::set_chaos`] fails a share of them at
//! random, as the simulated gateway's chaos does.
//!
//! # Layout
//!
//! - this module: [`FakeStripe`] itself, what it holds and what it received;
//! - `server`: the HTTP handling (scripted answers, idempotent replays, routing, errors);
//! - `intents`: the PaymentIntent and refund endpoints;
//! - `events`: the customer's moves as webhook bodies, and the JSON of intents and charges.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use commands::payment_gateway::Chaos;
use serde_json::Value;

mod events;
mod intents;
mod server;

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
    /// Faults injected into a share of requests, after scripted answers.
    chaos: Chaos,
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
                .default_service(web::to(server::answer))
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

    /// From now on a share of requests (those not answered by [`FakeStripe::then_answer`])
    /// fail as `chaos` draws: refused with a 503, never answered, or answered with a body that
    /// is not JSON — the same modes as the simulated gateway's. Nothing changes for them.
    pub fn set_chaos(&self, chaos: Chaos) {
        self.state().chaos = chaos;
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
