//! The payment gateway: the real async-stripe client against a fake Stripe started here, the
//! retry and breaker layer around it, and the simulated provider end to end through webhooks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use commands::CommandMetadata;
use commands::payment_gateway::{
    IntentRequest, PaymentGateway, PaymentGatewayError, ResiliencePolicy, Resilient,
    SimulatedGateway, StripeGateway,
};
use domain::payment::{Payment, PaymentCommand};
use domain::{Currency, Money, OrderId, Owner, PaymentId};
use serde_json::{Value, json};
use tests::{TestApp, WEBHOOK_SECRET, eventually, spawn_app};

/// One request the fake received; the form body is decoded into pairs.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    idempotency_key: Option<String>,
    form: HashMap<String, String>,
}

#[derive(Default)]
struct Script {
    received: Mutex<Vec<Received>>,
    /// Answers given before falling back to a success for the path.
    answers: Mutex<VecDeque<(u16, Value)>>,
}

/// A Stripe stand-in on a free port: records requests and answers from a script.
struct FakeStripe {
    uri: String,
    script: Arc<Script>,
    server: actix_web::dev::ServerHandle,
}

impl FakeStripe {
    async fn start() -> Self {
        let script = Arc::new(Script::default());
        let data = web::Data::from(Arc::clone(&script));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let uri = format!("http://{}/", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            uri,
            script,
            server: handle,
        }
    }

    fn then_answer(&self, status: u16, body: Value) {
        self.script
            .answers
            .lock()
            .unwrap()
            .push_back((status, body));
    }

    fn received(&self) -> Vec<Received> {
        self.script.received.lock().unwrap().clone()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let form = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let path = request.path().to_owned();
    script.received.lock().unwrap().push(Received {
        method: request.method().to_string(),
        path: path.clone(),
        idempotency_key: request
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_owned()),
        form,
    });
    let scripted = script.answers.lock().unwrap().pop_front();
    let (status, body) = scripted.unwrap_or_else(|| (200, success_for(&path)));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

fn decode(text: &str) -> String {
    text.replace("%5B", "[")
        .replace("%5D", "]")
        .replace('+', " ")
}

/// The smallest bodies async-stripe accepts (every required field).
fn success_for(path: &str) -> Value {
    if path == "/v1/refunds" {
        return json!({"id": "re_fake_1", "object": "refund", "amount": 500,
            "created": 1_700_000_000, "currency": "mxn"});
    }
    let status = if path.ends_with("/cancel") {
        "canceled"
    } else {
        "requires_payment_method"
    };
    json!({"id": "pi_fake_1", "object": "payment_intent", "amount": 1500,
        "amount_capturable": 0, "amount_received": 0, "capture_method": "automatic",
        "client_secret": "pi_fake_1_secret_abc", "confirmation_method": "automatic",
        "created": 1_700_000_000, "currency": "mxn", "livemode": false, "metadata": {},
        "payment_method_types": ["card"], "status": status})
}

fn stripe_error(kind: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "code": "card_declined", "message": message}})
}

fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}

fn intent_request(amount: i64) -> IntentRequest {
    let owner = Owner::Order(OrderId::new_random());
    IntentRequest {
        payment_id: PaymentId::for_owner(owner),
        owner,
        amount: mxn(amount),
    }
}

fn stripe_gateway(fake: &FakeStripe) -> StripeGateway {
    StripeGateway::new("sk_test_reserva", Some(&fake.uri), Duration::from_secs(5)).unwrap()
}

fn fast_policy() -> ResiliencePolicy {
    ResiliencePolicy {
        attempt_timeout: Duration::from_secs(5),
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        failure_threshold: 3,
        cool_down: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn stripe_calls_carry_deterministic_idempotency_keys_and_the_payment_metadata() {
    // Arrange
    let fake = FakeStripe::start().await;
    let gateway = stripe_gateway(&fake);
    let request = intent_request(1500);
    let Owner::Order(order_id) = request.owner else {
        unreachable!()
    };

    // Act
    let intent = gateway.create_intent(&request).await.unwrap();
    gateway.cancel_intent("pi_fake_1").await.unwrap();
    let refund = gateway.refund("pi_fake_1", mxn(500), "r-1").await.unwrap();

    // Assert
    assert_eq!(intent.id, "pi_fake_1");
    assert_eq!(
        intent.client_secret.as_deref(),
        Some("pi_fake_1_secret_abc")
    );
    assert_eq!(refund, "re_fake_1");
    let [create, cancel, refunded] = fake.received().try_into().unwrap();
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/v1/payment_intents")
    );
    let key = format!("create-{}", request.payment_id);
    assert_eq!(create.idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(create.form["amount"], "1500");
    assert_eq!(create.form["currency"], "mxn");
    assert_eq!(
        create.form["metadata[payment_id]"],
        request.payment_id.to_string()
    );
    assert_eq!(create.form["metadata[order_id]"], order_id.to_string());
    assert_eq!(cancel.path, "/v1/payment_intents/pi_fake_1/cancel");
    assert_eq!(cancel.idempotency_key.as_deref(), Some("cancel-pi_fake_1"));
    assert_eq!(refunded.path, "/v1/refunds");
    assert_eq!(refunded.idempotency_key.as_deref(), Some("refund-r-1"));
    assert_eq!(refunded.form["amount"], "500");
    assert_eq!(refunded.form["payment_intent"], "pi_fake_1");
}

#[tokio::test]
async fn two_server_errors_are_retried_with_the_same_idempotency_key() {
    // Arrange
    let fake = FakeStripe::start().await;
    fake.then_answer(500, stripe_error("api_error", "boom"));
    fake.then_answer(500, stripe_error("api_error", "boom"));
    let gateway = Resilient::new(stripe_gateway(&fake), fast_policy());
    let request = intent_request(1500);

    // Act
    let intent = gateway.create_intent(&request).await;

    // Assert
    assert_eq!(intent.unwrap().id, "pi_fake_1");
    let keys: Vec<_> = fake
        .received()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    let key = Some(format!("create-{}", request.payment_id));
    assert_eq!(keys, [key.clone(), key.clone(), key]);
}

#[tokio::test]
async fn a_declined_card_is_not_retried() {
    let fake = FakeStripe::start().await;
    fake.then_answer(402, stripe_error("card_error", "Your card was declined."));
    let gateway = Resilient::new(stripe_gateway(&fake), fast_policy());

    let outcome = gateway.create_intent(&intent_request(1500)).await;

    assert_eq!(
        outcome,
        Err(PaymentGatewayError::Declined(
            "Your card was declined.".to_owned()
        ))
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn after_three_consecutive_failures_the_circuit_opens_without_calling_stripe() {
    // Arrange
    let fake = FakeStripe::start().await;
    for _ in 0..3 {
        fake.then_answer(503, stripe_error("api_error", "down"));
    }
    let gateway = Resilient::new(stripe_gateway(&fake), fast_policy());

    // Act
    let first = gateway.create_intent(&intent_request(1500)).await;
    let second = gateway.cancel_intent("pi_fake_1").await;

    // Assert
    assert!(
        matches!(first, Err(PaymentGatewayError::Unavailable(_))),
        "{first:?}"
    );
    assert_eq!(second, Err(PaymentGatewayError::CircuitOpen));
    assert_eq!(fake.received().len(), 3, "the open circuit sent nothing");
}

/// A simulated gateway delivering to `app`. The delay leaves the test time to record the
/// Payment before the webhook about it arrives.
fn simulated(app: &TestApp) -> SimulatedGateway {
    SimulatedGateway::new(
        format!("{}/webhooks/stripe", app.address),
        WEBHOOK_SECRET.to_owned(),
        Duration::from_millis(500),
    )
}

/// Creates the intent and then the Payment that records it, as the order saga does.
async fn pay(app: &TestApp, gateway: &SimulatedGateway, amount: i64) -> (PaymentId, String) {
    let request = intent_request(amount);
    let intent = gateway.create_intent(&request).await.unwrap();
    let command = PaymentCommand::Create {
        owner: request.owner,
        amount: request.amount,
        provider: gateway.provider().to_owned(),
        provider_intent_id: intent.id.clone(),
        client_secret: intent.client_secret,
    };
    let id = request.payment_id;
    app.bus
        .execute::<Payment>(&id.to_string(), command, &CommandMetadata::system("test"))
        .await
        .unwrap();
    (id, intent.id)
}

async fn wait_for_event(app: &TestApp, id: PaymentId, event_type: &str) -> Vec<String> {
    eventually(&format!("payment {id} to record {event_type}"), || async {
        let events: Vec<String> = app
            .events_for("payment", &id.to_string())
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        events.iter().any(|e| e == event_type).then_some(events)
    })
    .await
}

#[tokio::test]
async fn a_simulated_payment_succeeds_by_signed_webhook_and_can_be_refunded() {
    // Arrange
    let app = spawn_app().await;
    let gateway = simulated(&app);
    let (id, intent) = pay(&app, &gateway, 1500).await;
    wait_for_event(&app, id, "PaymentSucceeded").await;

    // Act
    let refund = gateway.refund(&intent, mxn(500), "r-1").await.unwrap();
    let again = gateway.refund(&intent, mxn(500), "r-1").await.unwrap();

    // Assert
    assert_eq!(refund, again, "a repeated refund key is the same refund");
    let events = wait_for_event(&app, id, "PaymentRefunded").await;
    assert_eq!(
        events,
        ["PaymentCreated", "PaymentSucceeded", "PaymentRefunded"]
    );
    let refunded = app.events_for("payment", &id.to_string()).await;
    let payload = refunded[2].payload.to_string();
    assert!(payload.contains("500"), "{payload}");
}

#[tokio::test]
async fn a_simulated_amount_ending_in_02_fails() {
    let app = spawn_app().await;
    let gateway = simulated(&app);

    let (id, _) = pay(&app, &gateway, 1502).await;

    let events = wait_for_event(&app, id, "PaymentFailed").await;
    assert_eq!(events, ["PaymentCreated", "PaymentFailed"]);
}
