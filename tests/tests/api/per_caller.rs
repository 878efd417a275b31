//! Budgets and idempotency keys belong to the caller (the token's subject), end to end with
//! auth on: one customer spending its budget or reusing a key never touches another's.

use api::auth::Role;
use api::configuration::{AuthSettings, RateLimits};
use serde_json::{Value, json};
use tests::{JWT_SECRET, TestApp, spawn_app_with};
use uuid::Uuid;

async fn spawn_secured(limits: Option<RateLimits>) -> TestApp {
    let app = spawn_app_with(|settings| {
        settings.sagas = false;
        settings.auth = Some(AuthSettings::new(JWT_SECRET).expect("a long enough secret"));
        settings.rate_limits = limits;
    })
    .await;
    let admin = app.token("ops", Role::Admin);
    let response = app
        .post_as(
            &admin,
            "/api/v1/stock-items",
            &json!({"sku": "MUG-1", "name": "Mug", "kind": "product", "quantity": 500,
                "low_stock_threshold": 1, "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    app
}

fn order_for(customer: Uuid, quantity: u32) -> Value {
    json!({"customer_id": customer, "items": [{"sku": "MUG-1", "quantity": quantity}]})
}

async fn post_keyed(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/orders", app.address))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn orders_placed(app: &TestApp) -> usize {
    app.all_events()
        .await
        .iter()
        .filter(|e| e.event_type == "OrderPlaced")
        .count()
}

#[tokio::test]
async fn one_customer_spending_its_order_budget_leaves_anothers_untouched() {
    // Arrange: every request comes from 127.0.0.1, so only the token tells the clients apart.
    let limits = RateLimits {
        orders_per_minute: 3,
        ..RateLimits::default()
    };
    let app = spawn_secured(Some(limits)).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);

    // Act
    let mut alice_statuses = Vec::new();
    for _ in 0..4 {
        let response = app
            .post_as(&alice_token, "/api/v1/orders", &order_for(alice, 1))
            .await;
        alice_statuses.push(response.status().as_u16());
    }
    let bob_first = app
        .post_as(&bob_token, "/api/v1/orders", &order_for(bob, 1))
        .await;

    // Assert
    assert_eq!(alice_statuses, [202, 202, 202, 429]);
    assert_eq!(bob_first.status(), 202, "bob has a budget of his own");
    assert_eq!(bob_first.headers()["x-ratelimit-remaining"], "2");
    assert_eq!(orders_placed(&app).await, 4);
}

#[tokio::test]
async fn two_customers_may_use_the_same_idempotency_key() {
    // Arrange
    let app = spawn_secured(None).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);

    // Act: the same key, each with its own body, then each retries its own.
    let alice_first = post_keyed(&app, &alice_token, "checkout-1", &order_for(alice, 1)).await;
    let bob_first = post_keyed(&app, &bob_token, "checkout-1", &order_for(bob, 2)).await;
    let alice_again = post_keyed(&app, &alice_token, "checkout-1", &order_for(alice, 1)).await;

    // Assert: two orders, not a 422 for bob, and alice's retry replays her own answer.
    assert_eq!(alice_first.status(), 202);
    assert_eq!(bob_first.status(), 202, "bob's key is not alice's");
    assert_eq!(alice_again.status(), 202);
    assert_eq!(alice_again.headers()["idempotent-replayed"], "true");
    let alice_first: Value = alice_first.json().await.unwrap();
    let bob_first: Value = bob_first.json().await.unwrap();
    let alice_again: Value = alice_again.json().await.unwrap();
    assert_eq!(alice_again, alice_first);
    assert_ne!(bob_first["id"], alice_first["id"]);
    assert_eq!(orders_placed(&app).await, 2);
}

#[tokio::test]
async fn a_refused_token_claims_no_idempotency_key() {
    // Arrange
    let app = spawn_secured(None).await;
    let alice = Uuid::new_v4();
    let alice_token = app.token(&alice.to_string(), Role::Customer);

    // Act: a request with a broken token and a key, then the same key with a good token.
    let refused = post_keyed(&app, "not-a-token", "checkout-7", &order_for(alice, 1)).await;
    let accepted = post_keyed(&app, &alice_token, "checkout-7", &order_for(alice, 1)).await;

    // Assert
    assert_eq!(refused.status(), 401);
    assert_eq!(accepted.status(), 202);
    assert!(accepted.headers().get("idempotent-replayed").is_none());
    assert_eq!(orders_placed(&app).await, 1);
}
