//! Sagas that complete: simulated or Stripe, despite duplicate webhooks or a restart.

use super::{
    block_saga_states, count, event_types, intent_for, order_reaches, place_order, post_webhook,
    register_slot, spawn_with_stripe, stock,
};
use serde_json::{Value, json};
use tests::{eventually, spawn_app};

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
async fn a_saga_stopped_after_its_commands_but_before_its_state_resumes_without_doubling() {
    // Arrange: saga state cannot be written (reads still can), so the runner issues the
    // reservation, the intent and the payment, then blocks storing its state.
    let (app, fake) = spawn_with_stripe(None).await;
    app.register_product("MUG-1", 5).await;
    // A connection of the test's own: the pool's may belong to the server's worker threads,
    // which the restart below stops.
    let mut blocker = block_saga_states(&app).await;
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
    assert_eq!(
        creates, 1,
        "the replay found the Payment created and reused its intent, asking Stripe nothing"
    );
    let (_, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(saga["state"], "completed", "{saga}");
}
