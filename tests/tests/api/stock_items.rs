//! Inventory and time slots over HTTP.

use commands::CommandMetadata;
use domain::stock_item::{StockItem, StockItemCommand};
use domain::{OrderId, Owner, Quantity, ReservationId, Sku};
use serde_json::{Value, json};
use tests::{TestApp, eventually, spawn_app};

#[tokio::test]
async fn registering_and_restocking_a_product_shows_in_its_stock_level() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "mug-001", "name": "Clay mug", "kind": "product", "quantity": 5,
                    "low_stock_threshold": 2, "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["location"],
        "/api/v1/stock-items/MUG-001"
    );

    app.post(
        "/api/v1/stock-items/MUG-001/restock",
        &json!({"quantity": 3}),
    )
    .await;
    let head = app.head().await;
    let mut item: Value = app
        .get_at("/api/v1/stock-items/mug-001", head)
        .await
        .json()
        .await
        .unwrap();
    let fields = item.as_object_mut().unwrap();
    assert!(fields.remove("updated_at").is_some());
    assert_eq!(fields.remove("position"), Some(json!(head)));

    assert_eq!(
        item,
        json!({"sku": "MUG-001", "name": "Clay mug", "kind": "product", "on_hand": 8,
               "reserved": 0, "available": 8, "low_stock": false, "low_stock_threshold": 2,
               "depleted": false, "unit_price": {"amount": 1500, "currency": "MXN"}})
    );
}

#[tokio::test]
async fn a_time_slot_keeps_its_start_and_seats() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "TOUR-0900", "name": "Walking tour", "kind": "time_slot",
                    "quantity": 20, "starts_at": "2026-12-01T10:00:00Z",
                    "unit_price": {"amount": 50000, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);

    let slot: Value = app
        .get_at("/api/v1/stock-items/TOUR-0900", app.head().await)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(slot["kind"], "time_slot");
    assert_eq!(slot["starts_at"], "2026-12-01T10:00:00Z");
    assert_eq!(slot["available"], 20);
}

#[tokio::test]
async fn registering_a_sku_twice_is_a_conflict_and_writes_nothing() {
    let app = spawn_app().await;
    app.register_product("TWICE", 1).await;

    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "twice", "name": "Again", "kind": "product", "quantity": 9,
                    "unit_price": {"amount": 1, "currency": "MXN"}}),
        )
        .await;

    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "stock_item_exists");
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn an_unknown_sku_is_404_problem_json() {
    let app = spawn_app().await;

    let response = app.get("/api/v1/stock-items/NOPE-1").await;

    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "stock_item_not_found");
    let restock = app
        .post(
            "/api/v1/stock-items/NOPE-1/restock",
            &json!({"quantity": 1}),
        )
        .await;
    assert_eq!(restock.status(), 404);
    assert_eq!(app.event_count().await, 0);
}

/// Registers a product with a low-stock threshold over HTTP.
async fn register_with_threshold(app: &TestApp, sku: &str, quantity: u32, threshold: u32) {
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": "thing", "kind": "product", "quantity": quantity,
                    "low_stock_threshold": threshold,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202, "register {sku}");
}

/// Holds `quantity` units of `sku` for a new order, through the bus; returns the position.
async fn reserve(app: &TestApp, sku: &str, quantity: i64) -> i64 {
    let owner = Owner::Order(OrderId::new_random());
    let command = StockItemCommand::Reserve {
        reservation_id: ReservationId::for_owner(owner, &Sku::parse(sku).unwrap()),
        quantity: Quantity::new(quantity).unwrap(),
        owner,
        expires_at: chrono::Utc::now() + chrono::Duration::days(1),
    };
    app.bus
        .execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
        .await
        .unwrap()
        .position
        .unwrap()
}

/// `GET path`, expecting 200.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get_json(path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The SKUs of a page.
fn skus(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|item| item["sku"].as_str().unwrap())
        .collect()
}

/// The value of an unlabelled gauge in a Prometheus exposition.
fn gauge(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn an_item_reaching_its_threshold_is_low_and_reaching_zero_is_depleted() {
    // Arrange
    let app = spawn_app().await;
    register_with_threshold(&app, "EDGE-1", 3, 2).await;
    let path = "/api/v1/stock-items/EDGE-1";

    // Act
    let above = get_ok(&app, &format!("{path}?min_position={}", app.head().await)).await;
    let at_threshold = get_ok(
        &app,
        &format!("{path}?min_position={}", reserve(&app, "EDGE-1", 1).await),
    )
    .await;
    let at_zero = get_ok(
        &app,
        &format!("{path}?min_position={}", reserve(&app, "EDGE-1", 2).await),
    )
    .await;

    // Assert
    let flags = |item: &Value| {
        (
            item["available"].as_i64().unwrap(),
            item["low_stock"].as_bool().unwrap(),
            item["depleted"].as_bool().unwrap(),
        )
    };
    assert_eq!(flags(&above), (3, false, false), "{above}");
    assert_eq!(flags(&at_threshold), (2, true, false), "{at_threshold}");
    assert_eq!(flags(&at_zero), (0, true, true), "{at_zero}");
}

#[tokio::test]
async fn the_stock_list_filters_on_low_stock_and_depleted() {
    // Arrange: EDGE-1 sold out (threshold 2), EMPTY-1 registered empty with threshold 0
    // (never low, but depleted), LOW-1 at its threshold, FULL-1 well stocked.
    let app = spawn_app().await;
    register_with_threshold(&app, "EDGE-1", 3, 2).await;
    register_with_threshold(&app, "EMPTY-1", 0, 0).await;
    register_with_threshold(&app, "LOW-1", 4, 2).await;
    register_with_threshold(&app, "FULL-1", 10, 2).await;
    reserve(&app, "EDGE-1", 3).await;
    reserve(&app, "LOW-1", 2).await;
    let head = app.head().await;
    let list = |query: &str| format!("/api/v1/stock-items?{query}&min_position={head}");

    // Act
    let depleted = get_ok(&app, &list("depleted=true")).await;
    let in_stock = get_ok(&app, &list("depleted=false")).await;
    let low = get_ok(&app, &list("low_stock=true")).await;
    let low_not_depleted = get_ok(&app, &list("low_stock=true&depleted=false")).await;
    let (bad_status, bad) = app.get_json("/api/v1/stock-items?depleted=yes").await;

    // Assert
    assert_eq!(skus(&depleted), ["EDGE-1", "EMPTY-1"]);
    assert_eq!(skus(&in_stock), ["FULL-1", "LOW-1"]);
    assert_eq!(skus(&low), ["EDGE-1", "LOW-1"]);
    assert_eq!(skus(&low_not_depleted), ["LOW-1"]);
    assert_eq!(
        (bad_status, &bad["code"]),
        (400, &json!("validation_failed"))
    );
    assert_eq!(bad["errors"][0]["field"], "depleted", "{bad}");
}

#[tokio::test]
async fn metrics_show_how_many_items_are_low_and_depleted() {
    // Arrange: two low, one low and depleted, one depleted but never low (threshold 0).
    let app = spawn_app().await;
    register_with_threshold(&app, "LOW-1", 4, 2).await;
    register_with_threshold(&app, "LOW-2", 5, 3).await;
    register_with_threshold(&app, "EDGE-1", 3, 2).await;
    register_with_threshold(&app, "EMPTY-1", 0, 0).await;
    register_with_threshold(&app, "FULL-1", 10, 2).await;
    reserve(&app, "LOW-1", 2).await;
    reserve(&app, "LOW-2", 2).await;
    reserve(&app, "EDGE-1", 3).await;
    app.catch_up().await;

    // Act: sample now (as each scrape does too). Gauges are the process's, and
    // other tests' samplers set them from their own databases, so sample and read until a
    // read sees this app's values.
    let body = eventually("the stock gauges of this app", || async {
        projections::status::sample_once(&app.pool)
            .await
            .expect("sample the gauges");
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let values = (
            gauge(&body, "reserva_stock_items_low"),
            gauge(&body, "reserva_stock_items_depleted"),
        );
        (values == (Some(3.0), Some(2.0))).then_some(body)
    })
    .await;

    // Assert
    assert!(body.contains("reserva_feed_oldest_transaction_age_seconds "));
}
