//! Budgets by role (per hour: anonymous, customer; admins unlimited) and the `sensitive`
//! budget shared by the cancels, end to end.

use api::auth::Role;
use api::configuration::{AuthSettings, RateLimits};
use serde_json::{Value, json};
use tests::{JWT_SECRET, TestApp, spawn_app_with};
use uuid::Uuid;

async fn spawn(auth: bool, limits: RateLimits) -> TestApp {
    spawn_app_with(|settings| {
        settings.sagas = false;
        if auth {
            settings.auth = Some(AuthSettings::new(JWT_SECRET).expect("a long enough secret"));
        }
        settings.rate_limits = Some(limits);
    })
    .await
}

/// The status, `retry-after` and problem detail of a refusal (or just the status).
async fn outcome(response: reqwest::Response) -> (u16, Option<u64>, String) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let detail = if status == 429 {
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "rate_limited");
        body["detail"].as_str().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    (status, retry_after, detail)
}

#[tokio::test]
async fn a_customer_spends_its_hourly_budget_and_another_customer_keeps_its_own() {
    let app = spawn(
        true,
        RateLimits {
            customer_per_hour: 3,
            ..RateLimits::default()
        },
    )
    .await;
    let alice = app.token(&Uuid::new_v4().to_string(), Role::Customer);
    let bob = app.token(&Uuid::new_v4().to_string(), Role::Customer);

    let mut alices = Vec::new();
    for _ in 0..4 {
        alices.push(outcome(app.get_as(&alice, "/api/v1/orders").await).await);
    }
    let bobs = outcome(app.get_as(&bob, "/api/v1/orders").await).await;

    let statuses: Vec<u16> = alices.iter().map(|o| o.0).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let (_, retry_after, detail) = &alices[3];
    assert!(
        retry_after.is_some_and(|s| s > 60 && s <= 3600),
        "an hourly window: retry-after {retry_after:?}"
    );
    assert!(
        detail.contains("customer limit of 3 requests per hour"),
        "{detail}"
    );
    assert_eq!(bobs.0, 200, "bob's budget is his own");
}

#[tokio::test]
async fn admins_spend_no_budget_unless_one_is_configured() {
    let tight = RateLimits {
        per_minute: 2,
        customer_per_hour: 2,
        ..RateLimits::default()
    };
    let app = spawn(true, tight).await;
    let admin = app.token("ops", Role::Admin);

    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = app.get_as(&admin, "/api/v1/orders").await;
        assert!(response.headers().get("x-ratelimit-limit").is_none());
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200; 6], "admins are unlimited by default");

    let limited = spawn(
        true,
        RateLimits {
            admin_per_hour: 2,
            ..tight
        },
    )
    .await;
    let admin = limited.token("ops", Role::Admin);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            limited
                .get_as(&admin, "/api/v1/orders")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "a configured admin budget applies"
    );
}

#[tokio::test]
async fn callers_without_a_token_spend_the_anonymous_hourly_budget() {
    // Auth off: every caller is anonymous, keyed by address.
    let app = spawn(
        false,
        RateLimits {
            anonymous_per_hour: 2,
            ..RateLimits::default()
        },
    )
    .await;

    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(outcome(app.get("/api/v1/stock-items").await).await);
    }

    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert!(
        outcomes[2]
            .2
            .contains("anonymous limit of 2 requests per hour"),
        "{}",
        outcomes[2].2
    );
}

#[tokio::test]
async fn the_cancels_share_the_sensitive_budget_and_other_routes_do_not_spend_it() {
    let app = spawn(
        true,
        RateLimits {
            sensitive_per_minute: 2,
            ..RateLimits::default()
        },
    )
    .await;
    let admin = app.token("ops", Role::Admin);
    let register = app
        .post_as(
            &admin,
            "/api/v1/stock-items",
            &json!({"sku": "MUG-1", "name": "Mug", "kind": "product", "quantity": 50,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(register.status(), 202);
    let customer = Uuid::new_v4();
    let token = app.token(&customer.to_string(), Role::Customer);
    let mut orders = Vec::new();
    for _ in 0..4 {
        let placed = app
            .post_as(
                &token,
                "/api/v1/orders",
                &json!({"customer_id": customer, "items": [{"sku": "MUG-1", "quantity": 1}]}),
            )
            .await;
        assert_eq!(placed.status(), 202, "placing spends no sensitive budget");
        let body: Value = placed.json().await.unwrap();
        orders.push(body["id"].as_str().unwrap().to_owned());
    }

    let mut cancels = Vec::new();
    for id in &orders[..3] {
        let response = app
            .post_as(&token, &format!("/api/v1/orders/{id}/cancel"), &json!({}))
            .await;
        cancels.push(outcome(response).await);
    }
    let read = app.get_as(&token, "/api/v1/orders").await;

    let statuses: Vec<u16> = cancels.iter().map(|o| o.0).collect();
    assert_eq!(statuses, [202, 202, 429]);
    assert!(
        cancels[2]
            .2
            .contains("sensitive limit of 2 requests per minute"),
        "{}",
        cancels[2].2
    );
    assert_eq!(read.status(), 200, "other routes still answer");
    let cancelled = app
        .events_for("order", &orders[2])
        .await
        .iter()
        .filter(|e| e.event_type == "OrderCancelled")
        .count();
    assert_eq!(cancelled, 0, "the refused cancel changed nothing");
}
