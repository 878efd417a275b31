//! `GET /api/v1/payments`: a customer's payment history is its own; admins see everyone's.

use super::{place_order, register};
use api::auth::Role;
use serde_json::{Value, json};
use tests::{TestApp, eventually, spawn_app_with_auth};
use uuid::Uuid;

/// The ids of the payments on one page, and whether there is more.
async fn page(app: &TestApp, token: &str, query: &str) -> (Vec<String>, bool, Value) {
    let response = app.get_as(token, &format!("/api/v1/payments{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let body: Value = response.json().await.unwrap();
    let ids = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["has_more"].as_bool().unwrap(), body)
}

// Long on purpose: one set of payments, every view of it.
#[tokio::test]
async fn customers_see_their_own_payment_history_and_admins_everyones() {
    // Arrange: Alice pays two orders and a booking, Bob one order.
    let app = spawn_app_with_auth().await;
    register(&app, "MUG-1").await;
    let admin = app.token("ops", Role::Admin);
    let slot = app
        .post_as(
            &admin,
            "/api/v1/stock-items",
            &json!({"sku": "TOUR-1", "name": "Tour", "kind": "time_slot", "quantity": 20,
                    "starts_at": "2027-01-01T09:00:00Z",
                    "unit_price": {"amount": 900, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(slot.status(), 202);
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);
    place_order(&app, &alice_token, alice, "MUG-1").await;
    place_order(&app, &alice_token, alice, "MUG-1").await;
    let booking = app
        .post_as(
            &alice_token,
            "/api/v1/bookings",
            &json!({"customer_id": alice, "slot_sku": "TOUR-1", "guests": 1}),
        )
        .await;
    assert_eq!(booking.status(), 202);
    place_order(&app, &bob_token, bob, "MUG-1").await;
    let all = eventually("four payments to succeed", || async {
        let (ids, _, _) = page(&app, &admin, "?status=succeeded").await;
        (ids.len() == 4).then_some(ids)
    })
    .await;
    let head = app.head().await;

    // Act
    let (alices, alice_more, alice_body) =
        page(&app, &alice_token, &format!("?min_position={head}")).await;
    let (bobs, _, _) = page(&app, &bob_token, "").await;
    let (alice_asks_for_bob, _, _) = page(&app, &alice_token, &format!("?customer={bob}")).await;
    let (admin_all, _, _) = page(&app, &admin, "").await;
    let (admin_alice, _, _) = page(&app, &admin, &format!("?customer={alice}")).await;
    let (first, first_more, _) = page(&app, &alice_token, "?per_page=2").await;
    let (second, second_more, _) = page(&app, &alice_token, "?per_page=2&page=2").await;
    let (refunded, _, _) = page(&app, &admin, "?status=refunded").await;

    // Assert: Alice's three, newest first; never Bob's.
    assert_eq!(alices.len(), 3, "{alice_body}");
    assert!(!alice_more);
    assert_eq!(bobs.len(), 1);
    assert!(!alices.contains(&bobs[0]));
    let mut kinds: Vec<&str> = alice_body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["owner"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["booking", "order", "order"]);
    let created: Vec<&str> = alice_body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");
    assert!(
        alice_asks_for_bob.is_empty(),
        "another customer's history is an empty page"
    );
    assert_eq!(admin_all.len(), 4);
    let mut expected = all.clone();
    expected.sort();
    let mut got = admin_all.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(admin_alice, alices);
    assert_eq!(first.len(), 2);
    assert!(first_more);
    assert_eq!(second.len(), 1);
    assert!(!second_more);
    assert_eq!([first, second].concat(), alices);
    assert!(refunded.is_empty());
}

#[tokio::test]
async fn bad_filters_are_refused_and_anonymous_callers_get_401() {
    let app = spawn_app_with_auth().await;
    let admin = app.token("ops", Role::Admin);

    let status = app.get_as(&admin, "/api/v1/payments?status=paid-ish").await;
    let customer = app
        .get_as(&admin, "/api/v1/payments?customer=not-a-uuid")
        .await;
    let anonymous = app.get("/api/v1/payments").await;

    for response in [status, customer] {
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "validation_failed");
    }
    assert_eq!(anonymous.status(), 401);
}
