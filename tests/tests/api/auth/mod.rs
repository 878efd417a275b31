//! Bearer-token auth: every bad token is a 401 problem, customers reach only their own orders,
//! bookings and payments (someone else's answer 404 like unknown ids), `/admin` and stock
//! writes need an admin, and the platform endpoints stay open.
//!
//! Shared here: a server with auth on, signing claims, the 401 check, and registering and
//! ordering with a token.

use api::auth::{Claims, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tests::{JWT_SECRET, TestApp, spawn_app_with};
use uuid::Uuid;

mod ownership;
mod payment_history;
mod provider;
mod roles;
mod tokens;

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
