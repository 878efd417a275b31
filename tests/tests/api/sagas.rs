//! The order and booking sagas end to end over HTTP: first through the simulated gateway, then
//! through Stripe (the real async-stripe client against a fake Stripe, webhooks signed with the
//! real scheme), where each test decides when and how the customer pays.

use api::configuration::GatewaySettings;
use serde_json::{Value, json};
use std::time::Duration;
use tests::fake_stripe::{FakeIntent, FakeStripe};
use tests::{TestApp, eventually, spawn_app, spawn_app_with};

/// Places an order over HTTP and returns its id.
async fn place_order(app: &TestApp, items: Value) -> String {
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(), "items": items}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_owned()
}

/// Waits until the order's read model shows `status`.
async fn order_reaches(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&format!("order {id} reaches {status}"), || async {
        let (code, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && order["status"] == status).then_some(order)
    })
    .await
}

fn event_types(events: &[tests::StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[tokio::test]
async fn an_order_is_reserved_paid_and_completed_by_its_saga() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("MUG-1", 5).await;
    app.register_product("CUP-1", 5).await;

    // Act
    let id = place_order(
        &app,
        json!([{"sku": "MUG-1", "quantity": 2}, {"sku": "CUP-1", "quantity": 1}]),
    )
    .await;

    // Assert
    let order = order_reaches(&app, &id, "COMPLETED").await;
    assert_eq!(order["payment"]["status"], "succeeded");
    assert_eq!(
        event_types(&app.events_for("order", &id).await),
        [
            "OrderPlaced",
            "OrderStockReserved",
            "OrderPaymentRequested",
            "OrderCompleted"
        ]
    );
    for (sku, left) in [("MUG-1", 3), ("CUP-1", 4)] {
        let (_, item) = app
            .get_json(&format!(
                "/api/v1/stock-items/{sku}?min_position={}",
                app.head().await
            ))
            .await;
        assert_eq!(item["on_hand"], left, "{item}");
        assert_eq!(item["reserved"], 0, "{item}");
    }
    let (code, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(code, 200, "{saga}");
    assert_eq!(saga["state"], "completed");
    assert!(saga["history"].as_array().unwrap().len() >= 2, "{saga}");
}

// ---------------------------------------------------------------------------------------------
// Through Stripe: the real async-stripe client against the fake, webhooks signed for real.
// ---------------------------------------------------------------------------------------------

/// A service paying through the fake Stripe; `ttl` shortens both deadlines.
async fn spawn_with_stripe(ttl: Option<Duration>) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let uri = fake.uri.clone();
    let app = spawn_app_with(move |s| {
        s.gateway = GatewaySettings::Stripe {
            secret_key: "sk_test_reserva".to_owned(),
            api_base: Some(uri),
        };
        if let Some(ttl) = ttl {
            s.order_ttl = ttl;
            s.booking_ttl = ttl;
        }
    })
    .await;
    (app, fake)
}

/// The intent the saga created for `owner_key` (`order_id` / `booking_id`) `id`.
async fn intent_for(fake: &FakeStripe, owner_key: &str, id: &str) -> FakeIntent {
    eventually(&format!("an intent for {owner_key} {id}"), || async {
        fake.intents()
            .into_iter()
            .find(|i| i.metadata.get(owner_key).map(String::as_str) == Some(id))
    })
    .await
}

/// Delivers `body` as Stripe does: again after `503 payment_not_recorded`, which answers an
/// event that can arrive before the saga has recorded the payment the intent belongs to.
async fn post_webhook(app: &TestApp, body: &str) {
    eventually("the webhook is accepted", || async {
        let response = app.post_stripe_webhook(body).await;
        let status = response.status();
        if status.is_success() {
            return Some(());
        }
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status == 503 && problem["code"] == "payment_not_recorded",
            "{status}: {problem}"
        );
        None
    })
    .await;
}

async fn stock(app: &TestApp, sku: &str) -> Value {
    let (code, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/{sku}?min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!(code, 200, "{item}");
    item
}

fn count(events: &[tests::StoredEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

async fn register_slot(app: &TestApp, sku: &str, seats: u32) {
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": "Tour", "kind": "time_slot", "quantity": seats,
                    "starts_at": "2027-01-01T09:00:00Z",
                    "unit_price": {"amount": 2500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn an_order_paid_through_stripe_goes_from_started_to_completed() {
    // Arrange
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;

    // Act
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 2}])).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;
    let intent = intent_for(&fake, "order_id", &id).await;
    let (_, pending) = app
        .get_json(&format!(
            "/api/v1/orders/{id}?min_position={}",
            app.head().await
        ))
        .await;
    post_webhook(&app, &fake.succeed(&intent.id)).await;

    // Assert
    let order = order_reaches(&app, &id, "COMPLETED").await;
    assert_eq!(
        pending["payment"]["client_secret"],
        json!(format!("{}_secret_fake", intent.id))
    );
    assert_eq!(order["payment"]["status"], "succeeded");
    assert_eq!((intent.amount, intent.currency.as_str()), (3000, "mxn"));
    let payment_id = order["payment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(intent.metadata["payment_id"], payment_id);
    let creates: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/payment_intents")
        .collect();
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].idempotency_key.as_deref(),
        Some(format!("create-{payment_id}").as_str())
    );
    assert_eq!(
        event_types(&app.events_for("order", &id).await),
        [
            "OrderPlaced",
            "OrderStockReserved",
            "OrderPaymentRequested",
            "OrderCompleted"
        ]
    );
    let item = stock(&app, "MUG-1").await;
    assert_eq!(
        (item["on_hand"].clone(), item["reserved"].clone()),
        (json!(3), json!(0))
    );
}

#[tokio::test]
async fn a_booking_paid_through_stripe_is_confirmed_and_its_seats_committed() {
    // Arrange
    let (app, fake) = spawn_with_stripe(None).await;
    register_slot(&app, "TOUR-1", 20).await;

    // Act
    let response = app
        .post(
            "/api/v1/bookings",
            &json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "TOUR-1", "guests": 3}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let intent = intent_for(&fake, "booking_id", &id).await;
    post_webhook(&app, &fake.succeed(&intent.id)).await;

    // Assert
    eventually("the booking is confirmed", || async {
        let (_, booking) = app.get_json(&format!("/api/v1/bookings/{id}")).await;
        (booking["status"] == "CONFIRMED").then_some(())
    })
    .await;
    assert_eq!(intent.amount, 7500);
    let slot = stock(&app, "TOUR-1").await;
    assert_eq!(
        (slot["on_hand"].clone(), slot["reserved"].clone()),
        (json!(17), json!(0))
    );
}

#[tokio::test]
async fn an_order_with_one_unavailable_sku_fails_releases_the_others_and_creates_no_intent() {
    // Arrange: A sorts first, so it is held before B fails.
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("A-OK", 5).await;
    app.register_product("B-NONE", 0).await;

    // Act
    let id = place_order(
        &app,
        json!([{"sku": "B-NONE", "quantity": 1}, {"sku": "A-OK", "quantity": 2}]),
    )
    .await;

    // Assert
    let order = order_reaches(&app, &id, "STOCK_FAILED").await;
    assert!(
        order["failure_reason"].as_str().unwrap().contains("B-NONE"),
        "{order}"
    );
    let held = app.events_for("stock_item", "A-OK").await;
    assert_eq!(count(&held, "StockReserved"), 1);
    assert_eq!(count(&held, "ReservationReleased"), 1);
    let released = held
        .iter()
        .find(|e| e.event_type == "ReservationReleased")
        .unwrap();
    assert_eq!(
        released.payload["ReservationReleased"]["reason"],
        "compensation"
    );
    assert_eq!(
        count(
            &app.events_for("stock_item", "B-NONE").await,
            "StockReserved"
        ),
        0
    );
    assert!(
        fake.received()
            .iter()
            .all(|r| r.path != "/v1/payment_intents"),
        "no intent may be created for an order that could not be held"
    );
    assert_eq!(count(&app.all_events().await, "PaymentCreated"), 0);
    let item = stock(&app, "A-OK").await;
    assert_eq!(
        (item["available"].clone(), item["reserved"].clone()),
        (json!(5), json!(0))
    );
}

#[tokio::test]
async fn a_failed_payment_releases_the_reservations_and_closes_the_intent() {
    // Arrange
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 2}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;

    // Act
    post_webhook(&app, &fake.fail(&intent.id)).await;

    // Assert
    let order = order_reaches(&app, &id, "PAYMENT_FAILED").await;
    assert!(
        order["failure_reason"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{order}"
    );
    let item = stock(&app, "MUG-1").await;
    assert_eq!(
        (item["on_hand"].clone(), item["reserved"].clone()),
        (json!(5), json!(0))
    );
    eventually("the intent is canceled at Stripe", || async {
        (fake.intent(&intent.id).unwrap().status == "canceled").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unpaid_order_expires_and_a_payment_arriving_afterwards_is_refunded() {
    // Arrange: the customer pays at the provider just before the deadline, but the webhook is
    // late — Reserva expires the order first, and Stripe refuses to cancel the paid intent.
    let (app, fake) = spawn_with_stripe(Some(Duration::from_millis(300))).await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 2}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;
    let late_success = fake.succeed(&intent.id);

    // Act
    eventually(
        "the deadline passes and the job expires the order",
        || async { (app.run_deadlines_once().await.orders == 1).then_some(()) },
    )
    .await;
    order_reaches(&app, &id, "EXPIRED").await;
    // The saga releases the stock when it sees OrderExpired, after the order read model has.
    eventually("the saga to release the expired order's stock", || async {
        let item = stock(&app, "MUG-1").await;
        (item["available"] == json!(5) && item["reserved"] == json!(0)).then_some(())
    })
    .await;
    post_webhook(&app, &late_success).await;

    // Assert: the money goes back, and the refund's webhook ends the order REFUNDED.
    let refunded = eventually("the late payment is refunded at Stripe", || async {
        let intent = fake.intent(&intent.id).unwrap();
        (intent.amount_refunded == 3000).then_some(intent)
    })
    .await;
    assert_eq!(refunded.refunds.len(), 1);
    post_webhook(&app, &fake.refund_event(&intent.id)).await;
    order_reaches(&app, &id, "REFUNDED").await;
    let stock_events = app.events_for("stock_item", "MUG-1").await;
    assert_eq!(count(&stock_events, "ReservationCommitted"), 0);
    let released = stock_events
        .iter()
        .find(|e| e.event_type == "ReservationReleased")
        .unwrap();
    assert_eq!(released.payload["ReservationReleased"]["reason"], "expired");
}

#[tokio::test]
async fn an_unpaid_order_and_booking_expire_releasing_exactly_what_they_held_and_the_intent() {
    // Arrange
    let (app, fake) = spawn_with_stripe(Some(Duration::from_millis(300))).await;
    app.register_product("MUG-1", 5).await;
    register_slot(&app, "TOUR-1", 20).await;
    let order = place_order(&app, json!([{"sku": "MUG-1", "quantity": 4}])).await;
    let response = app
        .post(
            "/api/v1/bookings",
            &json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "TOUR-1", "guests": 6}),
        )
        .await;
    let booking = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order_intent = intent_for(&fake, "order_id", &order).await;
    let booking_intent = intent_for(&fake, "booking_id", &booking).await;
    assert_eq!(stock(&app, "TOUR-1").await["available"], 14);

    // Act
    eventually("both deadlines pass", || async {
        let expired = app.run_deadlines_once().await;
        let (_, o) = app.get_json(&format!("/api/v1/orders/{order}")).await;
        let (_, b) = app.get_json(&format!("/api/v1/bookings/{booking}")).await;
        let _ = expired;
        (o["status"] == "EXPIRED" && b["status"] == "EXPIRED").then_some(())
    })
    .await;

    // Assert
    for intent in [&order_intent, &booking_intent] {
        eventually("the intent is canceled at Stripe", || async {
            (fake.intent(&intent.id).unwrap().status == "canceled").then_some(())
        })
        .await;
    }
    eventually("stock and seats are back", || async {
        let mug = stock(&app, "MUG-1").await;
        let tour = stock(&app, "TOUR-1").await;
        (mug["available"] == 5 && tour["available"] == 20 && tour["reserved"] == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_same_success_webhook_delivered_five_times_at_once_completes_the_order_once() {
    // Arrange
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 1}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;
    let body = fake.succeed(&intent.id);

    // Act
    let deliveries = (0..5).map(|_| app.post_stripe_webhook(&body));
    let answers = futures::future::join_all(deliveries).await;

    // Assert
    assert!(answers.iter().all(|r| r.status().is_success()));
    order_reaches(&app, &id, "COMPLETED").await;
    let payment_id = order_reaches(&app, &id, "COMPLETED").await["payment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.catch_up().await;
    assert_eq!(
        count(
            &app.events_for("payment", &payment_id).await,
            "PaymentSucceeded"
        ),
        1
    );
    assert_eq!(
        count(&app.events_for("order", &id).await, "OrderCompleted"),
        1
    );
    assert_eq!(
        count(
            &app.events_for("stock_item", "MUG-1").await,
            "ReservationCommitted"
        ),
        1
    );
}

#[tokio::test]
async fn cancelling_before_payment_cancels_the_intent_and_releases_the_stock() {
    // Arrange
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 3}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;

    // Act
    let response = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({"reason": "changed my mind"}),
        )
        .await;

    // Assert
    assert_eq!(response.status(), 202);
    order_reaches(&app, &id, "CANCELLED").await;
    eventually("the intent is canceled and the stock back", || async {
        let item = stock(&app, "MUG-1").await;
        (fake.intent(&intent.id).unwrap().status == "canceled" && item["available"] == 5)
            .then_some(())
    })
    .await;
    assert!(fake.received().iter().all(|r| r.path != "/v1/refunds"));
}

#[tokio::test]
async fn cancelling_after_payment_refunds_and_returns_the_stock() {
    // Arrange
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 2}])).await;
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;
    post_webhook(&app, &fake.succeed(&intent.id)).await;
    order_reaches(&app, &id, "COMPLETED").await;
    assert_eq!(stock(&app, "MUG-1").await["on_hand"], 3);

    // Act
    let response = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    eventually("the payment is refunded at Stripe", || async {
        (fake.intent(&intent.id).unwrap().amount_refunded == 3000).then_some(())
    })
    .await;
    post_webhook(&app, &fake.refund_event(&intent.id)).await;

    // Assert
    order_reaches(&app, &id, "REFUNDED").await;
    let item = stock(&app, "MUG-1").await;
    assert_eq!(
        (item["on_hand"].clone(), item["reserved"].clone()),
        (json!(5), json!(0))
    );
    let returned = app.events_for("stock_item", "MUG-1").await;
    assert_eq!(count(&returned, "ReservationReturned"), 1);
}

#[tokio::test]
async fn a_saga_stopped_after_its_commands_but_before_its_state_resumes_without_doubling() {
    // Arrange: saga state cannot be written (reads still can), so the runner issues the
    // reservation, the intent and the payment, then blocks storing its state.
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;
    // A connection of the test's own: the pool's may belong to the server's worker threads,
    // which the restart below stops.
    let mut blocker = app.hold_lock("BEGIN").await;
    sqlx::query("LOCK TABLE saga_instances IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let id = place_order(&app, json!([{"sku": "MUG-1", "quantity": 2}])).await;
    eventually("the saga issued its commands", || async {
        let events = app.events_for("order", &id).await;
        (count(&events, "OrderPaymentRequested") == 1).then_some(())
    })
    .await;

    // Act: the process dies (its batch rolls back), a new one starts, the lock goes away.
    let app = app.restart().await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let intent = intent_for(&fake, "order_id", &id).await;
    order_reaches(&app, &id, "PAYMENT_PENDING").await;
    post_webhook(&app, &fake.succeed(&intent.id)).await;

    // Assert
    order_reaches(&app, &id, "COMPLETED").await;
    let stock_events = app.events_for("stock_item", "MUG-1").await;
    assert_eq!(count(&stock_events, "StockReserved"), 1);
    assert_eq!(count(&stock_events, "ReservationCommitted"), 1);
    assert_eq!(count(&app.all_events().await, "PaymentCreated"), 1);
    assert_eq!(
        fake.intents().len(),
        1,
        "the replay reached the same intent"
    );
    let creates = fake
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/payment_intents")
        .count();
    assert!(
        creates >= 2,
        "the replay asked Stripe again (same idempotency key)"
    );
    let (_, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(saga["state"], "completed", "{saga}");
}
