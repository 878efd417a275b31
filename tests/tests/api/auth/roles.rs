//! What each role may do: admin-only `/admin` and stock writes, own orders, open platform.

use super::{assert_refused, place_order, register, spawn_quiet_app};
use api::auth::Role;
use serde_json::{Value, json};
use tests::{eventually, spawn_app_with_auth};
use uuid::Uuid;

#[tokio::test]
async fn a_customer_on_admin_gets_403_and_an_admin_gets_200() {
    let app = spawn_quiet_app().await;
    let customer = app.token(&Uuid::new_v4().to_string(), Role::Customer);
    let admin = app.token("ops", Role::Admin);

    let as_customer = app.get_as(&customer, "/admin/projections").await;
    let as_admin = app.get_as(&admin, "/admin/projections").await;
    let anonymous = app.get("/admin/projections").await;

    assert_eq!(as_customer.status(), 403);
    let body: Value = as_customer.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    assert_eq!(as_admin.status(), 200);
    assert_refused(anonymous, "token_missing").await;
}

#[tokio::test]
async fn a_customer_may_read_stock_but_not_register_or_restock_it() {
    let app = spawn_quiet_app().await;
    register(&app, "MUG-1").await;
    let customer = app.token(&Uuid::new_v4().to_string(), Role::Customer);
    let head = app.head().await;

    let register = app
        .post_as(
            &customer,
            "/api/v1/stock-items",
            &json!({"sku": "FREE-1", "name": "Free", "kind": "product", "quantity": 99,
                    "unit_price": {"amount": 1, "currency": "MXN"}}),
        )
        .await;
    let restock = app
        .post_as(
            &customer,
            "/api/v1/stock-items/MUG-1/restock",
            &json!({"quantity": 5}),
        )
        .await;
    let read = app
        .get_as(
            &customer,
            &format!("/api/v1/stock-items/MUG-1?min_position={head}"),
        )
        .await;

    assert_eq!(register.status(), 403);
    assert_eq!(restock.status(), 403);
    assert_eq!(read.status(), 200);
    assert_eq!(app.event_count().await, 1, "only the admin's registration");
}

#[tokio::test]
async fn a_customer_placing_an_order_or_booking_for_another_customer_is_refused_with_403() {
    let app = spawn_quiet_app().await;
    register(&app, "MUG-1").await;
    let customer = app.token(&Uuid::new_v4().to_string(), Role::Customer);
    let someone_else = Uuid::new_v4();

    let order = app
        .post_as(
            &customer,
            "/api/v1/orders",
            &json!({"customer_id": someone_else, "items": [{"sku": "MUG-1", "quantity": 1}]}),
        )
        .await;
    let booking = app
        .post_as(
            &customer,
            "/api/v1/bookings",
            &json!({"customer_id": someone_else, "slot_sku": "MUG-1", "guests": 1}),
        )
        .await;

    assert_eq!(order.status(), 403);
    assert_eq!(order.json::<Value>().await.unwrap()["code"], "forbidden");
    assert_eq!(booking.status(), 403);
    assert_eq!(app.event_count().await, 1, "only the registration");
}

#[tokio::test]
async fn a_customer_completes_an_order_with_its_own_token_and_is_its_actor() {
    // Sagas on: the simulated gateway's webhooks reach /webhooks/stripe without a token.
    let app = spawn_app_with_auth().await;
    register(&app, "MUG-1").await;
    let alice = Uuid::new_v4();
    let bob_token = app.token(&Uuid::new_v4().to_string(), Role::Customer);
    // Minted as `reserva token --sub <alice> --role customer --ttl 30m` mints it.
    let ttl = api::auth::parse_ttl("30m").unwrap();
    let alice_token = api::auth::mint(
        app.settings.auth.as_ref().unwrap(),
        &alice.to_string(),
        Role::Customer,
        ttl,
    )
    .unwrap();

    let id = place_order(&app, &alice_token, alice, "MUG-1").await;
    let order = eventually("the order to complete", || async {
        let order: Value = app
            .get_as(&alice_token, &format!("/api/v1/orders/{id}"))
            .await
            .json()
            .await
            .ok()?;
        (order["status"] == "COMPLETED" && order["payment"]["status"] == "succeeded")
            .then_some(order)
    })
    .await;

    let payment = order["payment"]["id"].as_str().unwrap();
    let own_payment = app
        .get_as(&alice_token, &format!("/api/v1/payments/{payment}"))
        .await;
    let others_payment = app
        .get_as(&bob_token, &format!("/api/v1/payments/{payment}"))
        .await;
    assert_eq!(own_payment.status(), 200);
    assert_eq!(others_payment.status(), 404);
    let placed = &app.events_for("order", &id).await[0];
    assert_eq!(placed.metadata["actor"], alice.to_string());
}

#[tokio::test]
async fn platform_endpoints_stay_open_with_auth_on() {
    let app = spawn_quiet_app().await;

    assert_eq!(app.get("/health/live").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    // An unsigned webhook is refused by its signature check, not by auth.
    let webhook = app
        .post_raw("/webhooks/stripe", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(webhook.status(), 400);
}
