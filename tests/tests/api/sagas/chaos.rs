//! Gateway chaos: every call refused, hung or answered with an undecodable body. The saga must
//! still end (PAYMENT_FAILED), release what it held and keep no money; the breaker must open
//! under it and close again once the provider recovers; the fake Stripe fails in the same ways
//! as the simulated gateway, through the real Stripe client.

use std::time::Duration;

use super::{block_saga_states, intent_for, order_reaches, place_order, post_webhook, stock};
use api::configuration::GatewaySettings;
use commands::payment_gateway::{
    Chaos, Fault, IntentRequest, PaymentGateway, PaymentGatewayError, ResiliencePolicy, Resilient,
    SimulatedGateway, StripeGateway,
};
use domain::{Currency, Money, OrderId, Owner, PaymentId};
use serde_json::json;
use tests::{FakeStripe, TestApp, eventually, spawn_app_with};

/// Short enough that a hung attempt ends quickly; three consecutive failures open the breaker,
/// which then stays open for the rest of a test unless the test waits out `cool_down`.
fn fast_policy(cool_down: Duration) -> ResiliencePolicy {
    ResiliencePolicy {
        attempt_timeout: Duration::from_millis(300),
        attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        failure_threshold: 3,
        cool_down,
    }
}

async fn spawn_with_chaos(fault: Fault) -> TestApp {
    spawn_app_with(|s| {
        s.gateway_chaos = Chaos::always(fault);
        s.gateway_resilience = fast_policy(Duration::from_secs(600));
    })
    .await
}

/// Three one-unit orders on a product of five, every gateway call failing with `fault`.
async fn orders_end_with_nothing_held_or_kept(fault: Fault) {
    // Arrange
    let app = spawn_with_chaos(fault).await;
    app.register_product("MUG-1", 5).await;

    // Act
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 1}])).await;
        let order = order_reaches(&app, &id, "PAYMENT_FAILED").await;
        reasons.push(
            order["failure_reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    // Assert
    let item = stock(&app, "MUG-1").await;
    assert_eq!(item["on_hand"], 5, "{item}");
    assert_eq!(item["reserved"], 0, "{item}");
    assert_eq!(item["available"], 5, "{item}");
    let (payments,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_type = 'payment' \
         AND event_type IN ('PaymentCreated', 'PaymentSucceeded')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(payments, 0, "no payment may exist, let alone succeed");
    assert!(
        reasons[0].contains("unavailable"),
        "the first failure is the provider's: {reasons:?}"
    );
    assert!(
        reasons[2].contains("circuit is open"),
        "after three failed attempts the breaker refuses calls: {reasons:?}"
    );
}

#[tokio::test]
async fn orders_end_payment_failed_holding_and_keeping_nothing_when_every_call_is_refused() {
    orders_end_with_nothing_held_or_kept(Fault::Refuse).await;
}

#[tokio::test]
async fn orders_end_payment_failed_holding_and_keeping_nothing_when_every_call_hangs() {
    orders_end_with_nothing_held_or_kept(Fault::Hang).await;
}

#[tokio::test]
async fn orders_end_payment_failed_holding_and_keeping_nothing_when_every_answer_is_malformed() {
    orders_end_with_nothing_held_or_kept(Fault::Malformed).await;
}

fn intent_request() -> IntentRequest {
    let owner = Owner::Order(OrderId::new_random());
    IntentRequest {
        payment_id: PaymentId::for_owner(owner),
        owner,
        amount: Money::new(1500, Currency::parse("MXN").unwrap()).unwrap(),
    }
}

fn stripe_through(fake: &FakeStripe, policy: ResiliencePolicy) -> Resilient<StripeGateway> {
    let stripe =
        StripeGateway::new("sk_test_reserva", Some(&fake.uri), policy.attempt_timeout).unwrap();
    Resilient::new(stripe, policy)
}

#[tokio::test]
async fn the_fake_stripe_and_the_simulated_gateway_fail_alike_in_each_chaos_mode() {
    // A hang ends at whichever timeout fires first: the Stripe client's own (set to the same
    // attempt timeout) or the resilience layer's; both are the provider being unavailable.
    for (fault, says) in [
        (Fault::Refuse, &["503"][..]),
        (Fault::Hang, &["no answer within", "timeout"][..]),
        (Fault::Malformed, &["deserializ"][..]),
    ] {
        // Arrange
        let fake = FakeStripe::start().await;
        fake.set_chaos(Chaos::always(fault));
        let stripe = stripe_through(&fake, fast_policy(Duration::from_secs(600)));
        let simulated = Resilient::new(
            SimulatedGateway::new(
                "http://127.0.0.1:9/".to_owned(),
                "whsec_x".to_owned(),
                Duration::ZERO,
            )
            .with_chaos(Chaos::always(fault)),
            fast_policy(Duration::from_secs(600)),
        );

        // Act
        let through_stripe = stripe.create_intent(&intent_request()).await;
        let simulated_call = simulated.create_intent(&intent_request()).await;

        // Assert
        for outcome in [through_stripe, simulated_call] {
            match outcome {
                Err(PaymentGatewayError::Unavailable(message)) => {
                    assert!(
                        says.iter().any(|s| message.contains(s)),
                        "{fault:?}: {message}"
                    );
                }
                other => panic!("{fault:?}: expected unavailable, got {other:?}"),
            }
        }
        assert!(
            fake.intents().is_empty(),
            "{fault:?}: a failed call changed nothing"
        );
        let calm = simulated.inner().clone().with_chaos(Chaos::OFF);
        assert_eq!(calm.list_intents().await, Ok(Vec::new()), "{fault:?}");
    }
}

#[tokio::test]
async fn the_breaker_opens_under_refusals_and_closes_once_the_provider_answers_again() {
    // Arrange
    let fake = FakeStripe::start().await;
    fake.set_chaos(Chaos::always(Fault::Refuse));
    let gateway = stripe_through(&fake, fast_policy(Duration::from_millis(200)));

    // Act
    let first = gateway.create_intent(&intent_request()).await;
    let second = gateway.create_intent(&intent_request()).await;
    fake.set_chaos(Chaos::OFF);
    let while_open = gateway.create_intent(&intent_request()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_cool_down = gateway.create_intent(&intent_request()).await;

    // Assert
    assert!(
        matches!(first, Err(PaymentGatewayError::Unavailable(_))),
        "{first:?}"
    );
    assert_eq!(second, Err(PaymentGatewayError::CircuitOpen));
    assert_eq!(while_open, Err(PaymentGatewayError::CircuitOpen));
    assert!(after_cool_down.is_ok(), "{after_cool_down:?}");
    assert_eq!(
        fake.intents().len(),
        1,
        "only the call after the cool-down got through"
    );
}

/// Found by the storm under chaos: a batch that fails (another saga's refund, say) is replayed
/// event by event with its saga states rolled back while the commands it issued stay. A saga
/// that had ended its order in PAYMENT_FAILED then met a refused `StockHeld` and waited in
/// `held` for a cancel or expiry that never comes.
#[tokio::test]
async fn a_saga_replayed_after_it_failed_the_payment_ends_payment_failed_not_held() {
    // Arrange: saga states cannot be written, so the saga issues every command of the flow
    // (reserve, stock held, the refused intent, release, payment failed), then blocks.
    let app = spawn_with_chaos(Fault::Refuse).await;
    app.register_product("MUG-1", 5).await;
    let mut blocker = block_saga_states(&app).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 1}])).await;
    tests::eventually("the saga failed the payment", || async {
        let events = app.events_for("order", &id).await;
        events
            .iter()
            .any(|e| e.event_type == "OrderPaymentFailed")
            .then_some(())
    })
    .await;

    // Act: the process dies (its batch rolls back), a new one replays the step.
    let app = app.restart().await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    // Assert
    let saga = tests::eventually("the replayed saga ends", || async {
        let (code, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
        (code == 200 && saga["state"] != "new").then_some(saga)
    })
    .await;
    assert_eq!(saga["state"], "payment_failed", "{saga}");
    let item = stock(&app, "MUG-1").await;
    assert_eq!(item["reserved"], 0, "{item}");
    assert_eq!(item["available"], 5, "{item}");
}

/// A service paying through `fake` (the real Stripe client), with the fast policy and
/// `cool_down`.
async fn spawn_on_stripe(fake: &FakeStripe, cool_down: Duration) -> TestApp {
    let uri = fake.uri.clone();
    spawn_app_with(move |s| {
        s.gateway = GatewaySettings::Stripe {
            secret_key: "sk_test_reserva".to_owned(),
            api_base: Some(uri),
        };
        s.gateway_resilience = fast_policy(cool_down);
    })
    .await
}

#[tokio::test]
async fn a_refund_that_meets_an_open_breaker_is_retried_past_it_not_parked() {
    // Arrange: a paid order at Stripe; the breaker opens after three failures and rests 1 s.
    let fake = FakeStripe::start().await;
    let app = spawn_on_stripe(&fake, Duration::from_secs(1)).await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 1}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;
    post_webhook(&app, &fake.succeed(&intent.id)).await;
    order_reaches(&app, &id, "COMPLETED").await;

    // Act: Stripe refuses every call while the customer cancels (a refund is due), for longer
    // than the feed's default retries (five within about 2 s) would have waited.
    fake.set_chaos(Chaos::always(Fault::Refuse));
    let response = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE status = 'parked'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(parked, 0, "a refund is not parked while the provider rests");
    fake.set_chaos(Chaos::OFF);

    // Assert: once Stripe answers again the money goes back, and the order ends REFUNDED.
    let refunded = eventually("the refund reaches Stripe", || async {
        let intent = fake.intent(&intent.id).unwrap();
        (intent.amount_refunded == 1500).then_some(intent)
    })
    .await;
    assert_eq!(refunded.refunds.len(), 1, "refunded once");
    post_webhook(&app, &fake.refund_event(&intent.id)).await;
    order_reaches(&app, &id, "REFUNDED").await;
}

#[tokio::test]
async fn a_replayed_payment_step_reuses_the_created_intent_instead_of_failing_a_paid_order() {
    // Arrange: saga states cannot be written, so the saga creates the intent and the Payment
    // (both kept: they are the provider's and the store's) and then blocks; the customer pays.
    let fake = FakeStripe::start().await;
    let app = spawn_on_stripe(&fake, Duration::from_secs(600)).await;
    app.register_product("MUG-1", 5).await;
    let mut blocker = block_saga_states(&app).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 1}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    eventually("the saga requested the payment", || async {
        let events = app.events_for("order", &id).await;
        events
            .iter()
            .any(|e| e.event_type == "OrderPaymentRequested")
            .then_some(())
    })
    .await;
    post_webhook(&app, &fake.succeed(&intent.id)).await;

    // Act: the provider now refuses every call (a replay that asked it again would fail the
    // order although it is paid); the process dies and a new one replays the saga's batch.
    fake.set_chaos(Chaos::always(Fault::Refuse));
    let app = app.restart().await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    // Assert: the order completes on the payment it has; nothing failed, nothing is kept.
    order_reaches(&app, &id, "COMPLETED").await;
    let events = app.events_for("order", &id).await;
    assert!(
        !events.iter().any(|e| e.event_type == "OrderPaymentFailed"),
        "a paid order was failed"
    );
    assert_eq!(fake.intents().len(), 1, "one intent, never a second");
    let item = stock(&app, "MUG-1").await;
    assert_eq!(item["on_hand"], 4, "{item}");
    assert_eq!(item["reserved"], 0, "{item}");
}
