//! `POST /webhooks/stripe`: verified before parsing, applied once, refused loudly when forged.

use commands::CommandMetadata;
use domain::payment::{Payment, PaymentCommand};
use domain::{Currency, Money, OrderId, Owner, PaymentId};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use stripe_webhook::Webhook;
use tests::{TestApp, WEBHOOK_SECRET, spawn_app};

/// Creates a 1500 MXN payment for a new order with intent `intent`; returns its id.
async fn payment(app: &TestApp, intent: &str) -> PaymentId {
    let owner = Owner::Order(OrderId::new_random());
    let id = PaymentId::for_owner(owner);
    let command = PaymentCommand::Create {
        owner,
        amount: Money::new(1500, Currency::parse("MXN").unwrap()).unwrap(),
        provider: "stripe".to_owned(),
        provider_intent_id: intent.to_owned(),
        client_secret: Some(format!("{intent}_secret")),
    };
    app.bus
        .execute::<Payment>(&id.to_string(), command, &CommandMetadata::system("test"))
        .await
        .unwrap();
    id
}

/// A Stripe event around a PaymentIntent carrying `payment_id` in its metadata.
fn intent_event(event_id: &str, kind: &str, intent: &str, payment_id: PaymentId) -> String {
    json!({
        "id": event_id, "object": "event", "created": 1_700_000_000, "livemode": false,
        "pending_webhooks": 1, "type": kind,
        "data": {"object": {
            "id": intent, "object": "payment_intent", "amount": 1500, "amount_capturable": 0,
            "amount_received": 1500, "capture_method": "automatic",
            "confirmation_method": "automatic", "created": 1_700_000_000, "currency": "mxn",
            "livemode": false, "metadata": {"payment_id": payment_id.to_string()},
            "payment_method_types": ["card"], "status": "succeeded"
        }}
    })
    .to_string()
}

/// A `charge.refunded` event for a charge of `amount`: the charge names only its intent, and
/// `refunded` is cumulative.
pub(crate) fn refund_event(event_id: &str, intent: &str, amount: i64, refunded: i64) -> String {
    json!({
        "id": event_id, "object": "event", "created": 1_700_000_000, "livemode": false,
        "pending_webhooks": 1, "type": "charge.refunded",
        "data": {"object": {
            "id": "ch_1", "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": refunded, "billing_details": {}, "captured": true,
            "created": 1_700_000_000, "currency": "mxn", "disputed": false, "livemode": false,
            "metadata": {}, "paid": true, "refunded": refunded == amount, "status": "succeeded",
            "payment_intent": intent
        }}
    })
    .to_string()
}

async fn deliver(app: &TestApp, body: &str, signature: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.unwrap()
}

async fn payment_events(app: &TestApp, id: PaymentId) -> Vec<String> {
    app.events_for("payment", &id.to_string())
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn a_success_delivered_five_times_at_once_moves_the_payment_once() {
    // Arrange
    let app = spawn_app().await;
    let id = payment(&app, "pi_dup").await;
    let body = intent_event("evt_dup", "payment_intent.succeeded", "pi_dup", id);

    // Act
    let deliveries = (0..5).map(|_| app.post_stripe_webhook(&body));
    let responses = futures::future::join_all(deliveries).await;

    // Assert
    for response in responses {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        payment_events(&app, id).await,
        ["PaymentCreated", "PaymentSucceeded"]
    );
    let view: Value = app
        .get_at(&format!("/api/v1/payments/{id}"), app.head().await)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "succeeded");
}

#[tokio::test]
async fn a_failure_records_the_providers_reason() {
    let app = spawn_app().await;
    let id = payment(&app, "pi_fail").await;

    let response = app
        .post_stripe_webhook(&intent_event(
            "evt_f",
            "payment_intent.payment_failed",
            "pi_fail",
            id,
        ))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        payment_events(&app, id).await,
        ["PaymentCreated", "PaymentFailed"]
    );
}

#[tokio::test]
async fn forged_stale_unsigned_or_garbled_deliveries_are_400_and_record_nothing() {
    // Arrange
    let app = spawn_app().await;
    let id = payment(&app, "pi_bad").await;
    let before = app.event_count().await;
    let body = intent_event("evt_bad", "payment_intent.succeeded", "pi_bad", id);
    let forged = Webhook::generate_test_header(&body, "whsec_someone_else", None);
    let stale = Webhook::generate_test_header(
        &body,
        WEBHOOK_SECRET,
        Some(chrono::Utc::now().timestamp() - 600),
    );
    let garbage = "{not json";
    let garbage_signed = Webhook::generate_test_header(garbage, WEBHOOK_SECRET, None);
    let tampered = body.replace("1500", "1");
    let original = Webhook::generate_test_header(&body, WEBHOOK_SECRET, None);

    // Act + Assert
    for (what, body, signature, code) in [
        (
            "another secret",
            body.as_str(),
            Some(forged.as_str()),
            "invalid_signature",
        ),
        (
            "a stale timestamp",
            body.as_str(),
            Some(stale.as_str()),
            "stale_signature",
        ),
        ("no header", body.as_str(), None, "missing_signature"),
        (
            "a garbled header",
            body.as_str(),
            Some("t=abc,v1=zz"),
            "malformed_signature",
        ),
        (
            "a tampered body",
            tampered.as_str(),
            Some(original.as_str()),
            "invalid_signature",
        ),
        (
            "a signed non-event",
            garbage,
            Some(garbage_signed.as_str()),
            "malformed_event",
        ),
    ] {
        let response = deliver(&app, body, signature).await;
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{what}");
    }
    assert_eq!(app.event_count().await, before, "nothing recorded");
}

#[tokio::test]
async fn partial_refunds_delivered_out_of_order_add_up_once() {
    // Arrange: a paid payment, known to the payments read model by its intent.
    let app = spawn_app().await;
    let id = payment(&app, "pi_ref").await;
    app.post_stripe_webhook(&intent_event(
        "evt_ok",
        "payment_intent.succeeded",
        "pi_ref",
        id,
    ))
    .await;
    app.catch_up().await;

    // Act: the second refund's event (cumulative 500) arrives before the first's (300), and
    // the second is delivered again.
    let second = refund_event("evt_r2", "pi_ref", 1500, 500);
    let first = refund_event("evt_r1", "pi_ref", 1500, 300);
    let statuses = [
        app.post_stripe_webhook(&second).await.status(),
        app.post_stripe_webhook(&first).await.status(),
        app.post_stripe_webhook(&second).await.status(),
    ];

    // Assert
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        payment_events(&app, id).await,
        ["PaymentCreated", "PaymentSucceeded", "PaymentRefunded"]
    );
    let view: Value = app
        .get_at(&format!("/api/v1/payments/{id}"), app.head().await)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["refunded"], json!({"amount": 500, "currency": "MXN"}));
}

#[tokio::test]
async fn events_reserva_does_not_act_on_are_acknowledged_and_record_nothing() {
    let app = spawn_app().await;
    let before = app.event_count().await;
    let unknown_intent = intent_event(
        "evt_u1",
        "payment_intent.succeeded",
        "pi_nobody",
        PaymentId::for_owner(Owner::Order(OrderId::new_random())),
    );
    let other_type = json!({
        "id": "evt_u2", "object": "event", "created": 1_700_000_000, "livemode": false,
        "pending_webhooks": 1, "type": "reserva.test_only",
        "data": {"object": {"id": "x_1", "object": "thing"}}
    })
    .to_string();

    for body in [unknown_intent, other_type] {
        let response = app.post_stripe_webhook(&body).await;
        assert_eq!(response.status(), 200, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["ignored"].is_string(), "{answer}");
    }
    assert_eq!(app.event_count().await, before);
}

/// A `payment_intent.succeeded` for an order placed with `app` (sagas off, so nothing records
/// its payment unless the test does): the payment's id, the order's id and the event's body.
async fn early_success(app: &TestApp, sku: &str, intent: &str) -> (PaymentId, String, String) {
    app.register_product(sku, 5).await;
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(), "items": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let order: Value = response.json().await.unwrap();
    let order_id = order["id"].as_str().unwrap().to_owned();
    let owner = Owner::Order(OrderId(order_id.parse().unwrap()));
    let payment_id = PaymentId::for_owner(owner);
    let mut body: Value = serde_json::from_str(&intent_event(
        "evt_early",
        "payment_intent.succeeded",
        intent,
        payment_id,
    ))
    .unwrap();
    body["data"]["object"]["metadata"]["order_id"] = json!(order_id);
    (payment_id, order_id, body.to_string())
}

#[tokio::test]
async fn a_delivery_that_beats_the_saga_waits_for_the_payment_then_503_when_it_never_comes() {
    // Arrange: no sagas; the delivery may wait up to five seconds for its payment.
    let app = tests::spawn_app_with(|settings| {
        settings.sagas = false;
        settings.webhook_wait = std::time::Duration::from_secs(5);
    })
    .await;
    let (payment_id, order_id, body) = early_success(&app, "EARLY-1", "pi_early_1").await;

    // Act: Stripe reports the success, and only a moment later the payment is recorded
    // (as the saga would, right after creating the intent).
    let answered = AtomicBool::new(false);
    let deliver = async {
        let response = app.post_stripe_webhook(&body).await;
        answered.store(true, Ordering::SeqCst);
        response
    };
    let record = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !answered.load(Ordering::SeqCst),
            "the delivery was answered before its payment was recorded"
        );
        let command = PaymentCommand::Create {
            owner: Owner::Order(OrderId(order_id.parse().unwrap())),
            amount: Money::new(1500, Currency::parse("MXN").unwrap()).unwrap(),
            provider: "stripe".to_owned(),
            provider_intent_id: "pi_early_1".to_owned(),
            client_secret: None,
        };
        app.bus
            .execute::<Payment>(
                &payment_id.to_string(),
                command,
                &CommandMetadata::system("test"),
            )
            .await
            .unwrap();
    };
    let (response, ()) = tokio::join!(deliver, record);

    // Assert: the one delivery was applied; no redelivery was needed.
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["payment_id"], json!(payment_id.to_string()));
    assert_eq!(
        payment_events(&app, payment_id).await,
        ["PaymentCreated", "PaymentSucceeded"]
    );

    // Act + Assert: a payment that is never recorded is refused after the wait, for Stripe to
    // deliver again, and nothing is recorded.
    let (never, _, body) = early_success(&app, "EARLY-2", "pi_early_2").await;
    let response = app.post_stripe_webhook(&body).await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "payment_not_recorded");
    assert!(payment_events(&app, never).await.is_empty());
}
