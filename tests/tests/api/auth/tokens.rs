//! Bad tokens: missing, expired, tampered, another algorithm, unsigned, malformed.

use super::{admin_claims, assert_refused, sign, spawn_quiet_app};
use api::auth::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

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
