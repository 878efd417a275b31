//! Sagas that give back what they held: no stock, failed payments, expiries, cancellations.

use super::{
    count, intent_for, order_reaches, place_order, post_webhook, register_slot, spawn_with_stripe,
    stock,
};
use serde_json::{Value, json};
use std::time::Duration;
use tests::eventually;

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
