//! `reserva reconcile`: the provider's intents (a fake Stripe, through the real client) against
//! the Payment aggregates, one test per kind of disagreement, and the subcommand's exit codes.

use std::time::Duration;

use api::cli::{self, Reconciled};
use api::configuration::GatewaySettings;
use commands::CommandMetadata;
use commands::payment_gateway::{IntentRequest, PaymentGateway, StripeGateway};
use commands::reconcile::{Discrepancy, reconcile};
use domain::payment::{Payment, PaymentCommand, PaymentStatus};
use domain::{Currency, Money, OrderId, Owner, PaymentId};
use tests::{FakeStripe, TestApp, spawn_app, spawn_app_with};

fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}

fn stripe_gateway(fake: &FakeStripe) -> StripeGateway {
    StripeGateway::new("sk_test_reserva", Some(&fake.uri), Duration::from_secs(5)).unwrap()
}

async fn execute(app: &TestApp, id: PaymentId, command: PaymentCommand) {
    app.bus
        .execute::<Payment>(&id.to_string(), command, &CommandMetadata::system("test"))
        .await
        .unwrap();
}

/// Creates a 1500 MXN intent at the fake for a new order, as the order saga does.
async fn intent(gateway: &StripeGateway) -> (PaymentId, Owner, String) {
    let owner = Owner::Order(OrderId::new_random());
    let request = IntentRequest {
        payment_id: PaymentId::for_owner(owner),
        owner,
        amount: mxn(1500),
    };
    let intent = gateway.create_intent(&request).await.unwrap();
    (request.payment_id, owner, intent.id)
}

/// Records the Payment of an intent, for `amount`.
async fn record(app: &TestApp, id: PaymentId, owner: Owner, intent_id: &str, amount: i64) {
    let command = PaymentCommand::Create {
        owner,
        amount: mxn(amount),
        provider: "stripe".to_owned(),
        provider_intent_id: intent_id.to_owned(),
        client_secret: None,
    };
    execute(app, id, command).await;
}

/// An intent at the fake and its Payment, in agreement (1500 MXN, unpaid).
async fn pay(app: &TestApp, gateway: &StripeGateway) -> (PaymentId, String) {
    let (id, owner, intent_id) = intent(gateway).await;
    record(app, id, owner, &intent_id, 1500).await;
    (id, intent_id)
}

fn succeed() -> PaymentCommand {
    PaymentCommand::Succeed {
        provider_event_id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
    }
}

#[tokio::test]
async fn reconcile_finds_nothing_when_stripe_and_the_payments_agree() {
    // Arrange: unpaid, paid (by webhook), partly refunded and cancelled payments; an intent
    // someone else made in the same account; a payment of another provider.
    let app = spawn_app().await;
    let fake = FakeStripe::start().await;
    let gateway = stripe_gateway(&fake);
    pay(&app, &gateway).await;
    let (_, paid) = pay(&app, &gateway).await;
    let response = app.post_stripe_webhook(&fake.succeed(&paid)).await;
    assert_eq!(response.status(), 200);
    let (refunded_id, refunded) = pay(&app, &gateway).await;
    fake.succeed(&refunded);
    execute(&app, refunded_id, succeed()).await;
    gateway.refund(&refunded, mxn(500), "r-1").await.unwrap();
    let response = app.post_stripe_webhook(&fake.refund_event(&refunded)).await;
    assert_eq!(response.status(), 200);
    let (canceled_id, canceled) = pay(&app, &gateway).await;
    gateway.cancel_intent(&canceled).await.unwrap();
    let cancel = PaymentCommand::Cancel {
        provider_event_id: None,
        reason: "abandoned".to_owned(),
    };
    execute(&app, canceled_id, cancel).await;
    let foreign = reqwest::Client::new()
        .post(format!("{}v1/payment_intents", fake.uri))
        .form(&[("amount", "999"), ("currency", "usd")])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    let owner = Owner::Order(OrderId::new_random());
    let simulated = PaymentCommand::Create {
        owner,
        amount: mxn(1500),
        provider: "simulated".to_owned(),
        provider_intent_id: "pi_sim_elsewhere".to_owned(),
        client_secret: None,
    };
    execute(&app, PaymentId::for_owner(owner), simulated).await;

    // Act
    let found = reconcile(&app.bus, &gateway).await.unwrap();

    // Assert
    assert!(found.is_empty(), "{found:#?}");
    assert_eq!(fake.intents().len(), 5);
}

#[tokio::test]
async fn reconcile_reports_each_kind_of_discrepancy() {
    // Arrange
    let app = spawn_app().await;
    let fake = FakeStripe::start().await;
    let gateway = stripe_gateway(&fake);
    // An intent whose payment was never recorded (the saga crashed in between).
    let (unrecorded, _, unknown_intent) = intent(&gateway).await;
    // A payment whose intent Stripe does not have.
    let owner = Owner::Order(OrderId::new_random());
    let missing = PaymentId::for_owner(owner);
    record(&app, missing, owner, "pi_nowhere", 1500).await;
    // A payment whose success webhook was lost.
    let (unpaid, unpaid_intent) = pay(&app, &gateway).await;
    fake.succeed(&unpaid_intent);
    // A payment recorded for another amount than its intent's.
    let (owed, owner, owed_intent) = intent(&gateway).await;
    record(&app, owed, owner, &owed_intent, 1400).await;
    // A paid payment whose refund webhook was lost.
    let (paid, paid_intent) = pay(&app, &gateway).await;
    fake.succeed(&paid_intent);
    execute(&app, paid, succeed()).await;
    gateway.refund(&paid_intent, mxn(500), "r-1").await.unwrap();

    // Act
    let found = reconcile(&app.bus, &gateway).await.unwrap();

    // Assert
    let expected = [
        Discrepancy::UnknownIntent {
            intent_id: unknown_intent,
            payment_id: unrecorded,
            status: "requires_payment_method".to_owned(),
            amount: mxn(1500),
        },
        Discrepancy::MissingIntent {
            payment_id: missing,
            intent_id: "pi_nowhere".to_owned(),
            status: PaymentStatus::Created,
        },
        Discrepancy::StatusMismatch {
            payment_id: unpaid,
            intent_id: unpaid_intent,
            ours: PaymentStatus::Created,
            provider: "succeeded".to_owned(),
        },
        Discrepancy::AmountMismatch {
            payment_id: owed,
            intent_id: owed_intent,
            ours: mxn(1400),
            provider: mxn(1500),
        },
        Discrepancy::RefundedMismatch {
            payment_id: paid,
            intent_id: paid_intent,
            ours: 0,
            provider: 500,
        },
    ];
    for discrepancy in &expected {
        assert!(
            found.contains(discrepancy),
            "{discrepancy} not in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[tokio::test]
async fn the_reconcile_command_exits_1_while_they_disagree_and_0_once_they_agree() {
    // Arrange: the service itself pays through the fake Stripe; one success webhook is late.
    let fake = FakeStripe::start().await;
    let api_base = Some(fake.uri.clone());
    let app = spawn_app_with(|settings| {
        settings.gateway = GatewaySettings::Stripe {
            secret_key: "sk_test_reserva".to_owned(),
            api_base,
        }
    })
    .await;
    let gateway = stripe_gateway(&fake);
    let (id, intent_id) = pay(&app, &gateway).await;
    let event = fake.succeed(&intent_id);

    // Act
    let mut before = Vec::new();
    let disagreeing = cli::reconcile(&app.settings, &app.pool, &mut before)
        .await
        .unwrap();
    let delivered = app.post_stripe_webhook(&event).await;
    assert_eq!(delivered.status(), 200);
    let mut after = Vec::new();
    let agreeing = cli::reconcile(&app.settings, &app.pool, &mut after)
        .await
        .unwrap();

    // Assert
    assert_eq!(disagreeing.exit_code(), 1);
    let before = String::from_utf8(before).unwrap();
    let lines: Vec<&str> = before.lines().collect();
    assert_eq!(lines.len(), 2, "{before}");
    assert!(
        lines[0].starts_with("status mismatch") && lines[0].contains(&id.to_string()),
        "{before}"
    );
    assert_eq!(
        lines[1],
        "reconcile: 1 discrepancy between stripe and Reserva"
    );
    assert_eq!(agreeing, Reconciled::Checked(Vec::new()));
    assert_eq!(agreeing.exit_code(), 0);
    let after = String::from_utf8(after).unwrap();
    assert_eq!(
        after,
        "reconcile: stripe and Reserva agree; no discrepancies\n"
    );
}

#[tokio::test]
async fn the_reconcile_command_checks_nothing_against_the_simulated_gateway() {
    let app = spawn_app().await;
    let mut out = Vec::new();

    let outcome = cli::reconcile(&app.settings, &app.pool, &mut out)
        .await
        .unwrap();

    assert_eq!(outcome, Reconciled::NothingToCheck);
    assert_eq!(outcome.exit_code(), 0);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("nothing was checked"), "{out}");
}

#[tokio::test]
async fn the_reconcile_command_fails_when_stripe_cannot_be_reached() {
    // Arrange: a Stripe address nothing listens on.
    let app = spawn_app().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let mut settings = app.settings.clone();
    settings.gateway = GatewaySettings::Stripe {
        secret_key: "sk_test_reserva".to_owned(),
        api_base: Some(closed),
    };

    // Act
    let outcome = cli::reconcile(&settings, &app.pool, &mut Vec::new()).await;

    // Assert: `main` turns an error of this subcommand into exit code 2.
    let error = outcome.unwrap_err();
    assert!(format!("{error:#}").contains("unavailable"), "{error:#}");
    assert_eq!(cli::EXIT_ERROR, 2);
}
