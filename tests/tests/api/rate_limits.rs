//! Per-client budgets: 429 problem+json with `retry-after` once spent, `x-ratelimit-*` on
//! every limited answer, webhooks and probes never limited. (Every test request comes from
//! 127.0.0.1, so they all spend one client's budget; keying by token subject and by address
//! is covered by the unit tests in `api::rate_limit`.)

use api::configuration::RateLimits;
use serde_json::{Value, json};
use tests::{TestApp, spawn_app_with};

async fn spawn_limited(per_minute: u64, orders: u64, bookings: u64) -> TestApp {
    spawn_app_with(|settings| {
        settings.sagas = false;
        settings.rate_limits = Some(RateLimits {
            per_minute,
            orders_per_minute: orders,
            bookings_per_minute: bookings,
            // These tests are about the per-minute budgets; the hourly ones are below.
            anonymous_per_hour: 0,
            ..RateLimits::default()
        });
    })
    .await
}

#[track_caller]
fn header(response: &reqwest::Response, name: &str) -> u64 {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn order() -> Value {
    json!({"customer_id": uuid::Uuid::new_v4(), "items": [{"sku": "MUG-1", "quantity": 1}]})
}

#[tokio::test]
async fn the_eleventh_order_in_a_minute_is_refused_with_429_and_rate_limit_headers() {
    // Arrange
    let app = spawn_limited(100, 10, 20).await;
    app.register_product("MUG-1", 100).await;

    // Act
    let mut remaining = Vec::new();
    for _ in 0..10 {
        let response = app.post("/api/v1/orders", &order()).await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, "x-ratelimit-limit"), 10);
        assert!((1..=60).contains(&header(&response, "x-ratelimit-reset")));
        remaining.push(header(&response, "x-ratelimit-remaining"));
    }
    let refused = app.post("/api/v1/orders", &order()).await;

    // Assert
    assert_eq!(remaining, (0..10).rev().collect::<Vec<u64>>());
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after = header(&refused, "retry-after");
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(header(&refused, "x-ratelimit-limit"), 10);
    assert_eq!(header(&refused, "x-ratelimit-remaining"), 0);
    assert_eq!(header(&refused, "x-ratelimit-reset"), retry_after);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(problem["status"], 429);
    let placed = app
        .all_events()
        .await
        .iter()
        .filter(|e| e.event_type == "OrderPlaced")
        .count();
    assert_eq!(placed, 10, "the refused order was not recorded");
    // Other routes still answer: only the order budget is spent.
    assert_eq!(app.get("/api/v1/orders").await.status(), 200);
}

#[tokio::test]
async fn the_overall_budget_refuses_reads_too() {
    // Arrange
    let app = spawn_limited(5, 10, 20).await;

    // Act
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.get("/api/v1/orders").await);
    }

    // Assert
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429]);
    assert_eq!(header(&statuses[0], "x-ratelimit-limit"), 5);
    assert_eq!(header(&statuses[4], "x-ratelimit-remaining"), 0);
    assert!(header(&statuses[5], "retry-after") >= 1);
    let problem: Value = statuses.pop().unwrap().json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
}

#[tokio::test]
async fn webhooks_probes_and_metrics_are_never_limited() {
    // Arrange
    let app = spawn_limited(2, 1, 1).await;
    let event = json!({"id": "evt_1", "object": "event", "type": "customer.created",
        "created": 1, "livemode": false, "pending_webhooks": 0, "api_version": "2024-06-20",
        "data": {"object": {"id": "cus_1", "object": "customer"}}})
    .to_string();

    // Act
    let mut responses = Vec::new();
    for _ in 0..5 {
        responses.push(app.post_stripe_webhook(&event).await);
        responses.push(app.get("/health/live").await);
        responses.push(app.get("/metrics").await);
    }

    // Assert
    for response in &responses {
        assert_ne!(response.status(), 429, "{}", response.url());
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
    // The budget itself is untouched by all of that.
    let first = app.get("/api/v1/orders").await;
    assert_eq!(header(&first, "x-ratelimit-remaining"), 1);
}

#[tokio::test]
async fn a_request_refused_by_a_route_budget_still_spends_the_overall_one() {
    // Arrange: one booking a minute, eight requests overall.
    let app = spawn_limited(8, 10, 1).await;
    let booking = json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "NONE-1", "guests": 1});

    // Act
    let first = app.post("/api/v1/bookings", &booking).await;
    let second = app.post("/api/v1/bookings", &booking).await;
    let read = app.get("/api/v1/bookings").await;

    // Assert
    assert_ne!(first.status(), 429);
    assert_eq!(header(&first, "x-ratelimit-limit"), 1, "the tighter budget");
    assert_eq!(second.status(), 429);
    assert_eq!(
        header(&second, "x-ratelimit-limit"),
        1,
        "the budget that refused"
    );
    let problem: Value = second.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("bookings"));
    assert_eq!(header(&read, "x-ratelimit-limit"), 8);
    assert_eq!(
        header(&read, "x-ratelimit-remaining"),
        5,
        "3 requests spent"
    );
}

#[tokio::test]
async fn the_headers_describe_the_budget_closest_to_refusing() {
    // Arrange: three requests overall, ten orders.
    let app = spawn_limited(3, 10, 20).await;

    // Act
    let read = app.get("/api/v1/orders").await;
    let order = app.post("/api/v1/orders", &order()).await;

    // Assert: after the order the overall budget has 1 left, the order one 9.
    assert_eq!(header(&read, "x-ratelimit-remaining"), 2);
    assert_eq!(header(&order, "x-ratelimit-limit"), 3);
    assert_eq!(header(&order, "x-ratelimit-remaining"), 1);
}
