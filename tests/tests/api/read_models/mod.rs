//! The read models over HTTP: lists with filters and pages, rows by id with their payment,
//! read-your-writes with `min_position`, bad parameters, and the operations endpoints.
//!
//! Shared here: placing and registering over HTTP, driving aggregates on the bus, and reading
//! pages.

use commands::{CommandMetadata, Committed};
use domain::booking::{Booking, BookingCommand};
use domain::order::{Order, OrderCommand};
use domain::payment::{Payment, PaymentCommand};
use domain::{Currency, Money, Owner, PaymentId};
use serde_json::{Value, json};
use tests::TestApp;
use uuid::Uuid;

mod bad_parameters;
mod lists;
mod min_position;
mod operations;
mod views;

fn meta() -> CommandMetadata {
    CommandMetadata::system("test")
}

fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}

/// Places an order over HTTP; its id and position.
async fn place_order(app: &TestApp, customer: Uuid, sku: &str, quantity: u32) -> (Uuid, i64) {
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": customer, "items": [{"sku": sku, "quantity": quantity}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    accepted(response).await
}

/// Places a booking over HTTP; its id and position.
async fn place_booking(app: &TestApp, customer: Uuid, slot: &str, guests: u32) -> (Uuid, i64) {
    let response = app
        .post(
            "/api/v1/bookings",
            &json!({"customer_id": customer, "slot_sku": slot, "guests": guests}),
        )
        .await;
    assert_eq!(response.status(), 202);
    accepted(response).await
}

async fn accepted(response: reqwest::Response) -> (Uuid, i64) {
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().parse().unwrap(),
        body["position"].as_i64().unwrap(),
    )
}

/// Registers a time slot of 20 seats over HTTP.
async fn register_slot(app: &TestApp, sku: &str, starts_at: &str) {
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": format!("Slot {sku}"), "kind": "time_slot",
                    "quantity": 20, "starts_at": starts_at,
                    "unit_price": {"amount": 25000, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202, "register {sku}");
}

/// Registers a product with a low-stock threshold over HTTP.
async fn register_product(app: &TestApp, sku: &str, quantity: u32, threshold: u32) {
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

/// Creates the payment of `owner` through the bus.
async fn create_payment(app: &TestApp, owner: Owner, amount: Money, secret: &str) -> PaymentId {
    let id = PaymentId::for_owner(owner);
    let create = PaymentCommand::Create {
        owner,
        amount,
        provider: "simulated".into(),
        provider_intent_id: format!("pi_{}", id.0.simple()),
        client_secret: Some(secret.into()),
    };
    app.bus
        .execute::<Payment>(&id.to_string(), create, &meta())
        .await
        .unwrap();
    id
}

async fn order_command(app: &TestApp, id: Uuid, command: OrderCommand) -> Committed {
    app.bus
        .execute::<Order>(&id.to_string(), command, &meta())
        .await
        .unwrap()
}

async fn booking_command(app: &TestApp, id: Uuid, command: BookingCommand) -> Committed {
    app.bus
        .execute::<Booking>(&id.to_string(), command, &meta())
        .await
        .unwrap()
}

async fn payment_command(app: &TestApp, id: PaymentId, command: PaymentCommand) -> Committed {
    app.bus
        .execute::<Payment>(&id.to_string(), command, &meta())
        .await
        .unwrap()
}

/// `GET path`, asserting 200.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get_json(path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The `field` of every item of a page, as strings.
fn column(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

fn strings(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(Uuid::to_string).collect()
}
