//! The payment gateway: the real async-stripe client against a fake Stripe started here, the
//! retry and breaker layer around it, and the simulated provider end to end through webhooks.

use std::time::Duration;

use commands::CommandMetadata;
use commands::payment_gateway::{
    IntentRequest, PaymentGateway, PaymentGatewayError, ResiliencePolicy, Resilient,
    SimulatedGateway, StripeGateway,
};
use domain::payment::{Payment, PaymentCommand};
use domain::{Currency, Money, OrderId, Owner, PaymentId};
use serde_json::{Value, json};
use tests::{FakeStripe, TestApp, WEBHOOK_SECRET, eventually, spawn_app};

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
    let abandoned = intent_request(1500);
    let paid = intent_request(1500);
    let Owner::Order(order_id) = abandoned.owner else {
        unreachable!()
    };

    // Act
    let intent = gateway.create_intent(&abandoned).await.unwrap();
    gateway.cancel_intent(&intent.id).await.unwrap();
    let other = gateway.create_intent(&paid).await.unwrap();
    fake.succeed(&other.id);
    let refund = gateway.refund(&other.id, mxn(500), "r-1").await.unwrap();

    // Assert
    assert_eq!(intent.id, "pi_fake_1");
    assert_eq!(
        intent.client_secret.as_deref(),
        Some("pi_fake_1_secret_fake")
    );
    assert_eq!(other.id, "pi_fake_2");
    assert_eq!(refund, "re_fake_1");
    let [create, cancel, _, refunded] = fake.received().try_into().unwrap();
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/v1/payment_intents")
    );
    let key = format!("create-{}", abandoned.payment_id);
    assert_eq!(create.idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(create.form["amount"], "1500");
    assert_eq!(create.form["currency"], "mxn");
    assert_eq!(
        create.form["metadata[payment_id]"],
        abandoned.payment_id.to_string()
    );
    assert_eq!(create.form["metadata[order_id]"], order_id.to_string());
    assert_eq!(cancel.path, "/v1/payment_intents/pi_fake_1/cancel");
    assert_eq!(cancel.idempotency_key.as_deref(), Some("cancel-pi_fake_1"));
    assert_eq!(refunded.path, "/v1/refunds");
    assert_eq!(refunded.idempotency_key.as_deref(), Some("refund-r-1"));
    assert_eq!(refunded.form["amount"], "500");
    assert_eq!(refunded.form["payment_intent"], "pi_fake_2");
    let [first, second] = fake.intents().try_into().unwrap();
    assert_eq!(
        (first.status.as_str(), first.cancellation_reason.as_deref()),
        ("canceled", Some("abandoned"))
    );
    assert_eq!(
        (second.status.as_str(), second.amount_refunded),
        ("succeeded", 500)
    );
}

#[tokio::test]
async fn a_repeated_call_reaches_the_same_stripe_object() {
    // Arrange
    let fake = FakeStripe::start().await;
    let gateway = stripe_gateway(&fake);
    let request = intent_request(1500);

    // Act
    let first = gateway.create_intent(&request).await.unwrap();
    let again = gateway.create_intent(&request).await.unwrap();
    fake.succeed(&first.id);
    let refund = gateway.refund(&first.id, mxn(500), "r-1").await.unwrap();
    let refund_again = gateway.refund(&first.id, mxn(500), "r-1").await.unwrap();

    // Assert
    assert_eq!(first, again);
    assert_eq!(refund, refund_again);
    let [intent] = fake.intents().try_into().unwrap();
    assert_eq!(intent.amount_refunded, 500, "one refund paid out");
}

#[tokio::test]
async fn stripe_refuses_what_an_intent_state_does_not_allow() {
    // Arrange
    let fake = FakeStripe::start().await;
    let gateway = stripe_gateway(&fake);
    let unpaid = gateway.create_intent(&intent_request(1500)).await.unwrap();
    let paid = gateway.create_intent(&intent_request(1500)).await.unwrap();
    fake.succeed(&paid.id);

    // Act
    let refund_unpaid = gateway.refund(&unpaid.id, mxn(100), "r-unpaid").await;
    let cancel_paid = gateway.cancel_intent(&paid.id).await;
    let refund_too_much = gateway.refund(&paid.id, mxn(1501), "r-much").await;
    gateway.cancel_intent(&unpaid.id).await.unwrap();
    let cancel_twice = gateway.cancel_intent(&unpaid.id).await;

    // Assert
    assert!(
        matches!(refund_unpaid, Err(PaymentGatewayError::Declined(_))),
        "{refund_unpaid:?}"
    );
    assert!(
        matches!(cancel_paid, Err(PaymentGatewayError::Declined(_))),
        "{cancel_paid:?}"
    );
    assert!(
        matches!(refund_too_much, Err(PaymentGatewayError::Declined(_))),
        "{refund_too_much:?}"
    );
    assert_eq!(cancel_twice, Ok(()));
    let statuses: Vec<_> = fake.intents().into_iter().map(|i| i.status).collect();
    assert_eq!(statuses, ["canceled", "succeeded"]);
}

#[tokio::test]
async fn listing_reads_every_page_with_refunds_and_metadata() {
    // Arrange: more intents than one page holds.
    let fake = FakeStripe::start().await;
    let gateway = stripe_gateway(&fake);
    let mut requests = Vec::new();
    for _ in 0..105 {
        let request = intent_request(1500);
        gateway.create_intent(&request).await.unwrap();
        requests.push(request);
    }
    fake.succeed("pi_fake_3");
    gateway.refund("pi_fake_3", mxn(700), "r-1").await.unwrap();

    // Act
    let listed = gateway.list_intents().await.unwrap();

    // Assert
    assert_eq!(listed.len(), 105);
    let refunded = listed.iter().find(|i| i.id == "pi_fake_3").unwrap();
    assert_eq!(refunded.status, "succeeded");
    assert_eq!(refunded.amount, mxn(1500));
    assert_eq!(refunded.amount_refunded, 700);
    assert_eq!(refunded.payment_id, Some(requests[2].payment_id));
    let pages: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.query)
        .collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0]["expand[0]"], "data.latest_charge");
    assert_eq!(pages[1]["starting_after"], listed[99].id);
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
