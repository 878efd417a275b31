//! Rows by id with their payment: an order, a payment, and bookings (listed and read).

use super::{
    booking_command, column, create_payment, get_ok, mxn, order_command, payment_command,
    place_booking, place_order, register_slot, strings,
};
use domain::booking::BookingCommand;
use domain::order::OrderCommand;
use domain::payment::PaymentCommand;
use domain::{BookingId, OrderId, Owner};
use serde_json::json;
use tests::spawn_app_without_sagas;
use uuid::Uuid;

#[tokio::test]
async fn an_order_shows_its_payment_once_payment_is_requested() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("LAMP", 10).await;
    let (id, placed) = place_order(&app, Uuid::new_v4(), "LAMP", 2).await;
    let before = get_ok(&app, &format!("/api/v1/orders/{id}?min_position={placed}")).await;
    let owner = Owner::Order(OrderId(id));

    // Act
    order_command(&app, id, OrderCommand::ConfirmStockReserved).await;
    let payment = create_payment(&app, owner, mxn(3000), "pi_lamp_secret").await;
    let requested = OrderCommand::RequestPayment {
        payment_id: payment,
    };
    let requested = order_command(&app, id, requested).await.position.unwrap();
    let pending = get_ok(
        &app,
        &format!("/api/v1/orders/{id}?min_position={requested}"),
    )
    .await;
    let succeed = PaymentCommand::Succeed {
        provider_event_id: "evt_lamp".into(),
    };
    payment_command(&app, payment, succeed).await;
    let complete = OrderCommand::Complete {
        payment_id: payment,
    };
    let completed = order_command(&app, id, complete).await.position.unwrap();
    let done = get_ok(
        &app,
        &format!("/api/v1/orders/{id}?min_position={completed}"),
    )
    .await;

    // Assert
    assert_eq!(before["status"], "STARTED");
    assert!(before.get("payment").is_none(), "{before}");
    assert_eq!(pending["status"], "PAYMENT_PENDING");
    assert_eq!(
        pending["payment"],
        json!({"id": payment.to_string(), "status": "created", "client_secret": "pi_lamp_secret"})
    );
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["payment"]["status"], "succeeded");
    assert_eq!(done["total"], json!({"amount": 3000, "currency": "MXN"}));
    assert_eq!(done["position"], completed);
}

#[tokio::test]
async fn a_payment_is_read_by_id_with_its_owner_status_and_refunds() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    let booking = BookingId::new_random();
    let payment = create_payment(&app, Owner::Booking(booking), mxn(5000), "s").await;
    let fail = PaymentCommand::Fail {
        provider_event_id: "evt_1".into(),
        reason: "card_declined".into(),
    };
    let failed = payment_command(&app, payment, fail).await.position.unwrap();
    let path = format!("/api/v1/payments/{payment}");

    // Act
    let declined = get_ok(&app, &format!("{path}?min_position={failed}")).await;
    let succeed = PaymentCommand::Succeed {
        provider_event_id: "evt_2".into(),
    };
    payment_command(&app, payment, succeed).await;
    let refund = PaymentCommand::Refund {
        provider_event_id: None,
        refund_id: "re_1".into(),
        amount: mxn(1200),
    };
    let refunded = payment_command(&app, payment, refund)
        .await
        .position
        .unwrap();
    let after = get_ok(&app, &format!("{path}?min_position={refunded}")).await;
    let unknown = app
        .get_json(&format!("/api/v1/payments/{}", Uuid::new_v4()))
        .await;

    // Assert
    assert_eq!(declined["status"], "failed");
    assert_eq!(declined["failure_reason"], "card_declined");
    assert_eq!(
        declined["owner"],
        json!({"kind": "booking", "id": booking.to_string()})
    );
    assert_eq!(
        declined["amount"],
        json!({"amount": 5000, "currency": "MXN"})
    );
    assert_eq!(declined["provider"], "simulated");
    assert_eq!(
        declined["provider_intent_id"],
        format!("pi_{}", payment.0.simple())
    );
    assert_eq!(after["status"], "refunded");
    assert_eq!(
        after["refunded"],
        json!({"amount": 1200, "currency": "MXN"})
    );
    assert_eq!(
        (unknown.0, &unknown.1["code"]),
        (404, &json!("payment_not_found"))
    );
}

#[tokio::test]
async fn bookings_are_listed_by_customer_and_slot_and_read_with_their_payment() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    register_slot(&app, "TOUR-AM", "2026-12-01T09:00:00Z").await;
    register_slot(&app, "TOUR-PM", "2026-12-01T15:00:00Z").await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let (alice_am, _) = place_booking(&app, alice, "TOUR-AM", 2).await;
    let (alice_pm, _) = place_booking(&app, alice, "tour-pm", 1).await;
    let (bob_am, _) = place_booking(&app, bob, "TOUR-AM", 3).await;
    let head = app.head().await;

    // Act
    let of_alice = get_ok(
        &app,
        &format!("/api/v1/bookings?customer={alice}&min_position={head}"),
    )
    .await;
    let on_am = get_ok(&app, "/api/v1/bookings?slot=tour-am").await;
    let both = get_ok(
        &app,
        &format!("/api/v1/bookings?customer={alice}&slot=TOUR-AM"),
    )
    .await;
    let placed = get_ok(&app, &format!("/api/v1/bookings/{alice_am}")).await;
    booking_command(&app, alice_am, BookingCommand::MarkSeatsHeld).await;
    let owner = Owner::Booking(BookingId(alice_am));
    let payment = create_payment(&app, owner, mxn(50000), "pi_am_secret").await;
    let request = BookingCommand::RequestPayment {
        payment_id: payment,
    };
    let requested = booking_command(&app, alice_am, request)
        .await
        .position
        .unwrap();
    let pending = get_ok(
        &app,
        &format!("/api/v1/bookings/{alice_am}?min_position={requested}"),
    )
    .await;
    let succeed = PaymentCommand::Succeed {
        provider_event_id: "evt_am".into(),
    };
    payment_command(&app, payment, succeed).await;
    let confirm = BookingCommand::Confirm {
        payment_id: payment,
    };
    let confirmed = booking_command(&app, alice_am, confirm)
        .await
        .position
        .unwrap();
    let done = get_ok(
        &app,
        &format!("/api/v1/bookings/{alice_am}?min_position={confirmed}"),
    )
    .await;

    // Assert
    assert_eq!(column(&of_alice, "id"), strings(&[alice_pm, alice_am]));
    assert_eq!(column(&of_alice, "slot_sku"), ["TOUR-PM", "TOUR-AM"]);
    assert_eq!(column(&on_am, "id"), strings(&[bob_am, alice_am]));
    assert_eq!(column(&both, "id"), strings(&[alice_am]));
    assert_eq!(placed["status"], "PENDING_PAYMENT");
    assert_eq!(
        (&placed["guests"], &placed["customer_id"]),
        (&json!(2), &json!(alice.to_string()))
    );
    assert_eq!(placed["total"], json!({"amount": 50000, "currency": "MXN"}));
    assert!(placed.get("payment").is_none(), "{placed}");
    assert_eq!(pending["status"], "PENDING_PAYMENT");
    assert_eq!(
        pending["payment"],
        json!({"id": payment.to_string(), "status": "created", "client_secret": "pi_am_secret"})
    );
    assert_eq!(done["status"], "CONFIRMED");
    assert_eq!(done["payment"]["status"], "succeeded");
}
