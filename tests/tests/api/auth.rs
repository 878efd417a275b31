//! Bearer-token auth: every bad token is a 401 problem, customers reach only their own orders,
//! bookings and payments (someone else's answer 404 like unknown ids), `/admin` and stock
//! writes need an admin, and the platform endpoints stay open.

use api::auth::{Claims, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tests::{JWT_SECRET, TestApp, eventually, spawn_app_with, spawn_app_with_auth};
use uuid::Uuid;

/// A server with auth on and no sagas (orders stay as placed).
async fn spawn_quiet_app() -> TestApp {
    spawn_app_with(|settings| {
        settings.auth =
            Some(api::configuration::AuthSettings::new(JWT_SECRET).expect("a long enough secret"));
        settings.sagas = false;
    })
    .await
}

/// Signs `claims` with the test secret under `algorithm`.
fn sign(algorithm: Algorithm, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

fn admin_claims(exp_offset_secs: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "ops".to_owned(),
        role: "admin".to_owned(),
        exp: now + exp_offset_secs,
        iat: now - 10,
    }
}

/// Asserts a 401 problem with `code` and a Bearer challenge.
async fn assert_refused(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], 401);
}

/// Registers product `sku` (20 units) as an admin.
async fn register(app: &TestApp, sku: &str) {
    let admin = app.token("ops", Role::Admin);
    let response = app
        .post_as(
            &admin,
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": "Mug", "kind": "product", "quantity": 20,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
}

/// Places an order of one `sku` for `customer` with `token`; returns its id.
async fn place_order(app: &TestApp, token: &str, customer: Uuid, sku: &str) -> String {
    let response = app
        .post_as(
            token,
            "/api/v1/orders",
            &json!({"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_401_and_records_nothing() {
    let app = spawn_quiet_app().await;

    let read = app.get("/api/v1/orders").await;
    let write = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": Uuid::new_v4(), "items": [{"sku": "MUG-1", "quantity": 1}]}),
        )
        .await;

    assert_refused(read, "token_missing").await;
    assert_refused(write, "token_missing").await;
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn an_expired_token_is_refused_with_401_token_expired() {
    let app = spawn_quiet_app().await;
    let expired = sign(Algorithm::HS256, &admin_claims(-3600));

    let response = app.get_as(&expired, "/api/v1/orders").await;

    assert_refused(response, "token_expired").await;
    // The same claims, still valid, pass: the expiry is what was refused.
    let fresh = sign(Algorithm::HS256, &admin_claims(3600));
    assert_eq!(app.get_as(&fresh, "/api/v1/orders").await.status(), 200);
}

#[tokio::test]
async fn a_tampered_token_is_refused_with_401_token_invalid() {
    let app = spawn_quiet_app().await;
    let customer = app.token(&Uuid::new_v4().to_string(), Role::Customer);
    let admin = app.token("ops", Role::Admin);
    // The admin's claims under the customer's signature: a promoted customer.
    let [_, admin_payload, _]: [&str; 3] = admin.split('.').collect::<Vec<_>>().try_into().unwrap();
    let [header, _, signature]: [&str; 3] =
        customer.split('.').collect::<Vec<_>>().try_into().unwrap();
    let tampered = format!("{header}.{admin_payload}.{signature}");
    let mut forged = admin_claims(3600);
    forged.sub = "mallory".to_owned();
    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &forged,
        &EncodingKey::from_secret(b"not-the-server-secret-not-the-server-secret"),
    )
    .unwrap();

    assert_refused(
        app.get_as(&tampered, "/admin/projections").await,
        "token_invalid",
    )
    .await;
    assert_refused(
        app.get_as(&other_secret, "/admin/projections").await,
        "token_invalid",
    )
    .await;
    assert_eq!(app.get_as(&admin, "/admin/projections").await.status(), 200);
}

#[tokio::test]
async fn a_token_signed_with_another_algorithm_is_refused_with_401() {
    let app = spawn_quiet_app().await;
    // HS512 with the right secret: a valid signature, but not the pinned algorithm.
    let hs512 = sign(Algorithm::HS512, &admin_claims(3600));
    // An RS256 header on an HMAC-signed body (the classic key-confusion attempt).
    let admin = app.token("ops", Role::Admin);
    let (_, rest) = admin.split_once('.').unwrap();
    let rs256 = format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{rest}");

    assert_refused(app.get_as(&hs512, "/api/v1/orders").await, "token_invalid").await;
    assert_refused(app.get_as(&rs256, "/api/v1/orders").await, "token_invalid").await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused_with_401() {
    let app = spawn_quiet_app().await;
    let admin = app.token("ops", Role::Admin);
    let payload = admin.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"} and an empty signature.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");

    let response = app.get_as(&unsigned, "/admin/projections").await;

    assert_refused(response, "token_invalid").await;
}

#[tokio::test]
async fn a_malformed_token_or_another_scheme_is_refused_with_401() {
    let app = spawn_quiet_app().await;
    let url = format!("{}/api/v1/orders", app.address);

    for token in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", ""] {
        let response = app.get_as(token, "/api/v1/orders").await;
        assert_refused(response, "token_invalid").await;
    }
    let basic = app
        .client
        .get(&url)
        .header("authorization", "Basic b3BzOnB3")
        .send()
        .await
        .unwrap();
    assert_refused(basic, "token_invalid").await;
}

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
