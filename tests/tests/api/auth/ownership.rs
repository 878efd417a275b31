//! Customers reach only their own orders and bookings; someone else's answer like unknown ids.

use super::{place_order, register, spawn_quiet_app};
use api::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn a_customer_reading_or_cancelling_anothers_order_gets_404_like_an_unknown_id() {
    let app = spawn_quiet_app().await;
    register(&app, "MUG-1").await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);
    let id = place_order(&app, &bob_token, bob, "MUG-1").await;
    let head = app.head().await;
    let unknown = Uuid::new_v4();

    let read = app
        .get_as(
            &alice_token,
            &format!("/api/v1/orders/{id}?min_position={head}"),
        )
        .await;
    let cancel = app
        .post_as(
            &alice_token,
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({}),
        )
        .await;
    let read_unknown = app
        .get_as(&alice_token, &format!("/api/v1/orders/{unknown}"))
        .await;
    let cancel_unknown = app
        .post_as(
            &alice_token,
            &format!("/api/v1/orders/{unknown}/cancel"),
            &json!({}),
        )
        .await;

    assert_eq!(read.status(), 404);
    assert_eq!(cancel.status(), 404);
    let read: Value = read.json().await.unwrap();
    let read_unknown: Value = read_unknown.json().await.unwrap();
    assert_eq!(read["code"], read_unknown["code"]);
    assert_eq!(read["detail"], format!("no order {id}"));
    assert_eq!(read_unknown["detail"], format!("no order {unknown}"));
    let cancel: Value = cancel.json().await.unwrap();
    let cancel_unknown: Value = cancel_unknown.json().await.unwrap();
    assert_eq!(cancel["code"], cancel_unknown["code"]);
    assert_eq!(cancel["detail"], cancel_unknown["detail"]);
    assert_eq!(
        app.events_for("order", &id).await.len(),
        1,
        "nothing was cancelled"
    );
    // Bob reads and cancels his own.
    let own = app
        .get_as(
            &bob_token,
            &format!("/api/v1/orders/{id}?min_position={head}"),
        )
        .await;
    assert_eq!(own.status(), 200);
    let own_cancel = app
        .post_as(
            &bob_token,
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(own_cancel.status(), 202);
}

#[tokio::test]
async fn a_customer_reading_or_cancelling_anothers_booking_gets_404() {
    let app = spawn_quiet_app().await;
    let admin = app.token("ops", Role::Admin);
    let slot = app
        .post_as(
            &admin,
            "/api/v1/stock-items",
            &json!({"sku": "TOUR-1", "name": "Tour", "kind": "time_slot", "quantity": 20,
                    "starts_at": "2026-12-01T09:00:00Z",
                    "unit_price": {"amount": 25000, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(slot.status(), 202);
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);
    let placed = app
        .post_as(
            &bob_token,
            "/api/v1/bookings",
            &json!({"customer_id": bob, "slot_sku": "TOUR-1", "guests": 2}),
        )
        .await;
    assert_eq!(placed.status(), 202);
    let id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let head = app.head().await;

    let read = app
        .get_as(
            &alice_token,
            &format!("/api/v1/bookings/{id}?min_position={head}"),
        )
        .await;
    let cancel = app
        .post_as(
            &alice_token,
            &format!("/api/v1/bookings/{id}/cancel"),
            &json!({}),
        )
        .await;
    let listed: Value = app
        .get_as(&alice_token, "/api/v1/bookings")
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(read.status(), 404);
    assert_eq!(cancel.status(), 404);
    assert_eq!(listed["items"], json!([]));
    assert_eq!(app.events_for("booking", &id).await.len(), 1);
    let own = app
        .get_as(
            &bob_token,
            &format!("/api/v1/bookings/{id}?min_position={head}"),
        )
        .await;
    assert_eq!(own.status(), 200);
}

#[tokio::test]
async fn a_customer_lists_only_its_own_orders() {
    let app = spawn_quiet_app().await;
    register(&app, "MUG-1").await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);
    let admin = app.token("ops", Role::Admin);
    let mine = [
        place_order(&app, &alice_token, alice, "MUG-1").await,
        place_order(&app, &alice_token, alice, "MUG-1").await,
    ];
    place_order(&app, &bob_token, bob, "MUG-1").await;
    let head = app.head().await;

    let own: Value = app
        .get_as(&alice_token, &format!("/api/v1/orders?min_position={head}"))
        .await
        .json()
        .await
        .unwrap();
    let bobs_asked_by_alice: Value = app
        .get_as(&alice_token, &format!("/api/v1/orders?customer={bob}"))
        .await
        .json()
        .await
        .unwrap();
    let all: Value = app
        .get_as(&admin, &format!("/api/v1/orders?min_position={head}"))
        .await
        .json()
        .await
        .unwrap();

    let mut ids: Vec<&str> = own["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = mine.iter().map(String::as_str).collect::<Vec<_>>();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(bobs_asked_by_alice["items"], json!([]));
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
}
