//! The read models over HTTP: lists with filters and pages, rows by id with their payment,
//! read-your-writes with `min_position`, bad parameters, and the operations endpoints.

use commands::{CommandMetadata, Committed};
use domain::booking::{Booking, BookingCommand};
use domain::order::{Order, OrderCommand};
use domain::payment::{Payment, PaymentCommand};
use domain::stock_item::{StockItem, StockItemCommand};
use domain::{BookingId, Currency, Money, OrderId, Owner, PaymentId, Quantity, ReservationId, Sku};
use projections::catalog;
use serde_json::{Value, json};
use sqlx::Connection;
use std::time::Duration;
use tests::{TestApp, spawn_app_without_sagas};
use uuid::Uuid;

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

#[tokio::test]
async fn orders_are_listed_per_customer_newest_first_twenty_to_a_page() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG", 1000).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut alices = Vec::new();
    for _ in 0..25 {
        alices.push(place_order(&app, alice, "MUG", 1).await.0);
    }
    let mut bobs = Vec::new();
    for _ in 0..3 {
        bobs.push(place_order(&app, bob, "MUG", 2).await.0);
    }
    let head = app.head().await;
    alices.reverse();
    bobs.reverse();

    // Act
    let first = get_ok(
        &app,
        &format!("/api/v1/orders?customer={alice}&min_position={head}"),
    )
    .await;
    let second = get_ok(&app, &format!("/api/v1/orders?customer={alice}&page=2")).await;
    let third = get_ok(&app, &format!("/api/v1/orders?customer={alice}&page=3")).await;
    let tens = get_ok(
        &app,
        &format!("/api/v1/orders?customer={alice}&page=3&per_page=10"),
    )
    .await;
    let of_bob = get_ok(&app, &format!("/api/v1/orders?customer={bob}")).await;
    let everyone = get_ok(&app, "/api/v1/orders?per_page=100").await;

    // Assert
    assert_eq!(column(&first, "id"), strings(&alices[..20]));
    assert_eq!(
        (&first["page"], &first["per_page"], &first["has_more"]),
        (&json!(1), &json!(20), &json!(true))
    );
    assert_eq!(column(&second, "id"), strings(&alices[20..]));
    assert_eq!(
        (&second["page"], &second["has_more"]),
        (&json!(2), &json!(false))
    );
    assert_eq!(column(&third, "id"), Vec::<String>::new());
    assert_eq!(third["has_more"], false);
    assert_eq!(column(&tens, "id"), strings(&alices[20..]));
    assert_eq!(column(&of_bob, "id"), strings(&bobs));
    assert_eq!(
        of_bob["items"][0]["total"],
        json!({"amount": 3000, "currency": "MXN"})
    );
    assert!(
        column(&of_bob, "customer_id")
            .iter()
            .all(|c| *c == bob.to_string())
    );
    assert_eq!(column(&everyone, "id").len(), 28);
    assert_eq!(everyone["has_more"], false);
}

#[tokio::test]
async fn orders_can_be_filtered_by_status() {
    // Arrange: six orders of alice's, two moved on, one cancelled; one of bob's.
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG", 1000).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut orders = Vec::new();
    for _ in 0..6 {
        orders.push(place_order(&app, alice, "MUG", 1).await.0);
    }
    let bobs = place_order(&app, bob, "MUG", 1).await.0;
    for i in [1, 3] {
        order_command(&app, orders[i], OrderCommand::ConfirmStockReserved).await;
    }
    let cancel = OrderCommand::Cancel {
        reason: "changed my mind".into(),
    };
    order_command(&app, orders[4], cancel).await;
    let head = app.head().await;
    let list = |query: &str| {
        let path = format!("/api/v1/orders?{query}&min_position={head}");
        let app = &app;
        async move { column(&get_ok(app, &path).await, "id") }
    };

    // Act & assert
    let reserved = strings(&[orders[3], orders[1]]);
    assert_eq!(
        list(&format!("customer={alice}&status=STOCK_RESERVED")).await,
        reserved
    );
    assert_eq!(
        list(&format!("customer={alice}&status=stock_reserved")).await,
        reserved
    );
    let started = strings(&[orders[5], orders[2], orders[0]]);
    assert_eq!(
        list(&format!("customer={alice}&status=STARTED")).await,
        started
    );
    assert_eq!(
        list("status=STARTED").await,
        strings(&[bobs, orders[5], orders[2], orders[0]])
    );
    assert_eq!(list("status=CANCELLED").await, strings(&[orders[4]]));
    assert_eq!(list("status=COMPLETED").await, Vec::<String>::new());
    let cancelled = get_ok(&app, &format!("/api/v1/orders/{}", orders[4])).await;
    assert_eq!(
        (&cancelled["status"], &cancelled["failure_reason"]),
        (&json!("CANCELLED"), &json!("changed my mind"))
    );
}

#[tokio::test]
async fn an_order_shows_its_payment_once_payment_is_requested() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("LAMP", 10).await;
    let (id, placed) = place_order(&app, Uuid::new_v4(), "LAMP", 2).await;
    let before = get_ok(&app, &format!("/api/v1/orders/{id}?min_position={placed}")).await;
    let owner = Owner::Order(OrderId(id));

    // Act
    order_command(&app, id, OrderCommand::ConfirmStockReserved).await;
    let payment = create_payment(&app, owner, mxn(3000), "pi_lamp_secret").await;
    let requested = OrderCommand::RequestPayment {
        payment_id: payment,
    };
    let requested = order_command(&app, id, requested).await.position.unwrap();
    let pending = get_ok(
        &app,
        &format!("/api/v1/orders/{id}?min_position={requested}"),
    )
    .await;
    let succeed = PaymentCommand::Succeed {
        provider_event_id: "evt_lamp".into(),
    };
    payment_command(&app, payment, succeed).await;
    let complete = OrderCommand::Complete {
        payment_id: payment,
    };
    let completed = order_command(&app, id, complete).await.position.unwrap();
    let done = get_ok(
        &app,
        &format!("/api/v1/orders/{id}?min_position={completed}"),
    )
    .await;

    // Assert
    assert_eq!(before["status"], "STARTED");
    assert!(before.get("payment").is_none(), "{before}");
    assert_eq!(pending["status"], "PAYMENT_PENDING");
    assert_eq!(
        pending["payment"],
        json!({"id": payment.to_string(), "status": "created", "client_secret": "pi_lamp_secret"})
    );
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["payment"]["status"], "succeeded");
    assert_eq!(done["total"], json!({"amount": 3000, "currency": "MXN"}));
    assert_eq!(done["position"], completed);
}

#[tokio::test]
async fn a_payment_is_read_by_id_with_its_owner_status_and_refunds() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    let booking = BookingId::new_random();
    let payment = create_payment(&app, Owner::Booking(booking), mxn(5000), "s").await;
    let fail = PaymentCommand::Fail {
        provider_event_id: "evt_1".into(),
        reason: "card_declined".into(),
    };
    let failed = payment_command(&app, payment, fail).await.position.unwrap();
    let path = format!("/api/v1/payments/{payment}");

    // Act
    let declined = get_ok(&app, &format!("{path}?min_position={failed}")).await;
    let succeed = PaymentCommand::Succeed {
        provider_event_id: "evt_2".into(),
    };
    payment_command(&app, payment, succeed).await;
    let refund = PaymentCommand::Refund {
        provider_event_id: None,
        refund_id: "re_1".into(),
        amount: mxn(1200),
    };
    let refunded = payment_command(&app, payment, refund)
        .await
        .position
        .unwrap();
    let after = get_ok(&app, &format!("{path}?min_position={refunded}")).await;
    let unknown = app
        .get_json(&format!("/api/v1/payments/{}", Uuid::new_v4()))
        .await;

    // Assert
    assert_eq!(declined["status"], "failed");
    assert_eq!(declined["failure_reason"], "card_declined");
    assert_eq!(
        declined["owner"],
        json!({"kind": "booking", "id": booking.to_string()})
    );
    assert_eq!(
        declined["amount"],
        json!({"amount": 5000, "currency": "MXN"})
    );
    assert_eq!(declined["provider"], "simulated");
    assert_eq!(
        declined["provider_intent_id"],
        format!("pi_{}", payment.0.simple())
    );
    assert_eq!(after["status"], "refunded");
    assert_eq!(
        after["refunded"],
        json!({"amount": 1200, "currency": "MXN"})
    );
    assert_eq!(
        (unknown.0, &unknown.1["code"]),
        (404, &json!("payment_not_found"))
    );
}

#[tokio::test]
async fn bookings_are_listed_by_customer_and_slot_and_read_with_their_payment() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    register_slot(&app, "TOUR-AM", "2026-12-01T09:00:00Z").await;
    register_slot(&app, "TOUR-PM", "2026-12-01T15:00:00Z").await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let (alice_am, _) = place_booking(&app, alice, "TOUR-AM", 2).await;
    let (alice_pm, _) = place_booking(&app, alice, "tour-pm", 1).await;
    let (bob_am, _) = place_booking(&app, bob, "TOUR-AM", 3).await;
    let head = app.head().await;

    // Act
    let of_alice = get_ok(
        &app,
        &format!("/api/v1/bookings?customer={alice}&min_position={head}"),
    )
    .await;
    let on_am = get_ok(&app, "/api/v1/bookings?slot=tour-am").await;
    let both = get_ok(
        &app,
        &format!("/api/v1/bookings?customer={alice}&slot=TOUR-AM"),
    )
    .await;
    let placed = get_ok(&app, &format!("/api/v1/bookings/{alice_am}")).await;
    booking_command(&app, alice_am, BookingCommand::MarkSeatsHeld).await;
    let owner = Owner::Booking(BookingId(alice_am));
    let payment = create_payment(&app, owner, mxn(50000), "pi_am_secret").await;
    let request = BookingCommand::RequestPayment {
        payment_id: payment,
    };
    let requested = booking_command(&app, alice_am, request)
        .await
        .position
        .unwrap();
    let pending = get_ok(
        &app,
        &format!("/api/v1/bookings/{alice_am}?min_position={requested}"),
    )
    .await;
    let succeed = PaymentCommand::Succeed {
        provider_event_id: "evt_am".into(),
    };
    payment_command(&app, payment, succeed).await;
    let confirm = BookingCommand::Confirm {
        payment_id: payment,
    };
    let confirmed = booking_command(&app, alice_am, confirm)
        .await
        .position
        .unwrap();
    let done = get_ok(
        &app,
        &format!("/api/v1/bookings/{alice_am}?min_position={confirmed}"),
    )
    .await;

    // Assert
    assert_eq!(column(&of_alice, "id"), strings(&[alice_pm, alice_am]));
    assert_eq!(column(&of_alice, "slot_sku"), ["TOUR-PM", "TOUR-AM"]);
    assert_eq!(column(&on_am, "id"), strings(&[bob_am, alice_am]));
    assert_eq!(column(&both, "id"), strings(&[alice_am]));
    assert_eq!(placed["status"], "PENDING_PAYMENT");
    assert_eq!(
        (&placed["guests"], &placed["customer_id"]),
        (&json!(2), &json!(alice.to_string()))
    );
    assert_eq!(placed["total"], json!({"amount": 50000, "currency": "MXN"}));
    assert!(placed.get("payment").is_none(), "{placed}");
    assert_eq!(pending["status"], "PENDING_PAYMENT");
    assert_eq!(
        pending["payment"],
        json!({"id": payment.to_string(), "status": "created", "client_secret": "pi_am_secret"})
    );
    assert_eq!(done["status"], "CONFIRMED");
    assert_eq!(done["payment"]["status"], "succeeded");
}

#[tokio::test]
async fn the_low_stock_list_holds_only_items_at_or_below_their_threshold() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    register_product(&app, "LOW-A", 1, 2).await;
    register_product(&app, "FULL-A", 10, 2).await;
    register_product(&app, "EDGE-A", 5, 1).await;
    // Reserving 4 of EDGE-A's 5 leaves 1 available: at its threshold.
    let sku = Sku::parse("EDGE-A").unwrap();
    let owner = Owner::Order(OrderId::new_random());
    let reserve = StockItemCommand::Reserve {
        reservation_id: ReservationId::for_owner(owner, &sku),
        quantity: Quantity::new(4).unwrap(),
        owner,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
    };
    app.bus
        .execute::<StockItem>("EDGE-A", reserve, &meta())
        .await
        .unwrap();
    let head = app.head().await;

    // Act
    let low = get_ok(
        &app,
        &format!("/api/v1/stock-items?low_stock=true&min_position={head}"),
    )
    .await;
    let fine = get_ok(&app, "/api/v1/stock-items?low_stock=false").await;

    // Assert
    assert_eq!(column(&low, "sku"), ["EDGE-A", "LOW-A"]);
    assert!(
        low["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["low_stock"] == true)
    );
    assert_eq!(
        (&low["items"][0]["available"], &low["items"][0]["reserved"]),
        (&json!(1), &json!(4))
    );
    assert_eq!(column(&fine, "sku"), ["FULL-A"]);
    assert_eq!(fine["items"][0]["low_stock"], false);
}

#[tokio::test]
async fn time_slots_are_listed_by_start_and_filtered_by_a_start_range() {
    // Arrange: registered out of order, and SKUs that sort differently from their starts.
    let app = spawn_app_without_sagas().await;
    register_slot(&app, "C-THIRD", "2026-12-03T09:00:00Z").await;
    register_slot(&app, "Z-FIRST", "2026-12-01T09:00:00Z").await;
    register_slot(&app, "A-FOURTH", "2026-12-04T09:00:00Z").await;
    register_slot(&app, "M-SECOND", "2026-12-02T09:00:00Z").await;
    register_product(&app, "PLAIN", 3, 0).await;
    let head = app.head().await;
    let list = |query: &str| {
        let path = format!("/api/v1/stock-items?{query}&min_position={head}");
        let app = &app;
        async move { column(&get_ok(app, &path).await, "sku") }
    };

    // Act & assert
    assert_eq!(
        list("kind=time_slot").await,
        ["Z-FIRST", "M-SECOND", "C-THIRD", "A-FOURTH"]
    );
    assert_eq!(
        list("kind=time_slot&starts_from=2026-12-02T09:00:00Z&starts_before=2026-12-04T09:00:00Z")
            .await,
        ["M-SECOND", "C-THIRD"],
        "starts_from is inclusive, starts_before exclusive"
    );
    assert_eq!(
        list("kind=time_slot&starts_from=2026-12-02T12:00:00Z").await,
        ["C-THIRD", "A-FOURTH"]
    );
    assert_eq!(
        list("kind=time_slot&starts_before=2026-12-02T00:00:00Z").await,
        ["Z-FIRST"]
    );
    assert_eq!(list("kind=product").await, ["PLAIN"]);
    assert_eq!(
        list("per_page=100").await,
        ["A-FOURTH", "C-THIRD", "M-SECOND", "PLAIN", "Z-FIRST"],
        "without kind=time_slot the list is by SKU"
    );
    let first = get_ok(&app, "/api/v1/stock-items?kind=time_slot&per_page=1").await;
    assert_eq!(first["items"][0]["starts_at"], "2026-12-01T09:00:00Z");
    assert_eq!(first["has_more"], true);
}

#[tokio::test]
async fn a_read_with_the_commands_position_always_sees_the_command() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("RYW", 1).await;
    let customer = Uuid::new_v4();

    for expected in 2..=51 {
        // Act
        let response = app
            .post("/api/v1/stock-items/RYW/restock", &json!({"quantity": 1}))
            .await;
        assert_eq!(response.status(), 202);
        let (_, position) = accepted_sku(response).await;
        let item = get_ok(
            &app,
            &format!("/api/v1/stock-items/RYW?min_position={position}"),
        )
        .await;

        // Assert
        assert_eq!(item["on_hand"], expected, "{item}");
        assert!(item["position"].as_i64().unwrap() >= position);
    }
    for _ in 0..10 {
        let (id, position) = place_order(&app, customer, "RYW", 1).await;
        let (status, order) = app
            .get_json(&format!("/api/v1/orders/{id}?min_position={position}"))
            .await;
        assert_eq!(
            (status, &order["status"]),
            (200, &json!("STARTED")),
            "{order}"
        );
    }
}

/// The position of a stock command's 202 answer (its id is a SKU, not a UUID).
async fn accepted_sku(response: reqwest::Response) -> (String, i64) {
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["position"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_min_position_beyond_the_head_answers_503_projection_behind() {
    let app = spawn_app_without_sagas().await;
    app.register_product("AHEAD", 1).await;
    let beyond = app.head().await + 1_000_000;

    // The server waits its read_wait (10 s in tests) before giving up.
    let response = app
        .get(&format!("/api/v1/stock-items/AHEAD?min_position={beyond}"))
        .await;

    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "projection_behind");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&beyond.to_string())
    );
}

#[tokio::test]
async fn bad_read_parameters_answer_400_naming_the_field() {
    let app = spawn_app_without_sagas().await;
    let id = Uuid::new_v4();
    let mut cases: Vec<(String, &str)> = [
        ("/api/v1/orders?page=0", "page"),
        ("/api/v1/orders?page=x", "page"),
        ("/api/v1/orders?per_page=1000", "per_page"),
        ("/api/v1/orders?per_page=0", "per_page"),
        ("/api/v1/orders?min_position=-1", "min_position"),
        ("/api/v1/orders?customer=not-a-uuid", "customer"),
        ("/api/v1/orders?status=NOPE", "status"),
        ("/api/v1/bookings?customer=nope", "customer"),
        ("/api/v1/bookings?slot=no%20spaces", "slot"),
        ("/api/v1/stock-items?low_stock=maybe", "low_stock"),
        ("/api/v1/stock-items?kind=x", "kind"),
        ("/api/v1/stock-items?starts_from=yesterday", "starts_from"),
        (
            "/api/v1/stock-items?starts_before=2026-13-01",
            "starts_before",
        ),
        ("/api/v1/stock-items?per_page=101", "per_page"),
        ("/api/v1/stock-items/ANY?min_position=soon", "min_position"),
    ]
    .map(|(path, field)| (path.to_owned(), field))
    .to_vec();
    for (route, value) in [("orders", "-5"), ("bookings", "1.5"), ("payments", "x")] {
        cases.push((
            format!("/api/v1/{route}/{id}?min_position={value}"),
            "min_position",
        ));
    }

    for (path, field) in cases {
        let response = app.get(&path).await;

        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "validation_failed", "{path}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{path}: {problem}");
    }
}

#[tokio::test]
async fn admin_projections_lists_every_projection_with_its_position_and_lag() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("ADMIN", 5).await;
    let head = app.catch_up().await;

    // Act
    let caught_up = get_ok(&app, "/admin/projections").await;
    // The payments runner cannot take its per-batch lock while we hold it exclusively.
    let blocker = app
        .hold_lock(
            "SELECT pg_advisory_lock(hashtextextended('reserva.subscription.swap.payments', 0))",
        )
        .await;
    let payment = create_payment(&app, Owner::Order(OrderId::new_random()), mxn(100), "s").await;
    let written = app.head().await;
    for name in ["orders", "bookings", "stock_items"] {
        projections::wait::until_reached(&app.pool, None, name, written, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let behind = get_ok(&app, "/admin/projections").await;
    blocker.close().await.unwrap();
    app.catch_up().await;
    let released = get_ok(
        &app,
        &format!("/api/v1/payments/{payment}?min_position={written}"),
    )
    .await;
    let after = get_ok(&app, "/admin/projections").await;

    // Assert
    let entries = caught_up.as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, catalog::names());
    for (entry, projection) in entries.iter().zip(catalog::all()) {
        assert_eq!(entry["table"], projection.table());
        assert_eq!(entry["position"], head, "{entry}");
        assert_eq!(
            (&entry["lag_events"], &entry["lag_seconds"]),
            (&json!(0), &json!(0.0))
        );
        assert_eq!(entry["open_dead_letters"], 0);
        assert_eq!(entry["running_here"], true);
        assert!(entry.get("rebuild").is_none(), "{entry}");
    }
    for entry in behind.as_array().unwrap() {
        if entry["name"] == "payments" {
            assert_eq!(entry["position"], head, "{entry}");
            assert_eq!(entry["lag_events"], 1, "{entry}");
            assert!(entry["lag_seconds"].as_f64().unwrap() > 0.0, "{entry}");
        } else {
            assert_eq!(entry["position"], written, "{entry}");
            assert_eq!(entry["lag_events"], 0, "{entry}");
        }
    }
    assert_eq!(released["status"], "created");
    for entry in after.as_array().unwrap() {
        assert_eq!(
            (&entry["position"], &entry["lag_events"]),
            (&json!(written), &json!(0))
        );
    }
}

#[tokio::test]
async fn metrics_export_subscription_lag_and_projection_gauges_after_traffic() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("METRIC", 3).await;
    app.post(
        "/api/v1/stock-items/METRIC/restock",
        &json!({"quantity": 2}),
    )
    .await;
    app.catch_up().await;
    let mut wanted = vec!["reserva_feed_oldest_transaction_age_seconds ".to_owned()];
    for name in catalog::names() {
        for metric in [
            "reserva_subscription_lag_events",
            "reserva_subscription_lag_seconds",
            "reserva_dead_letters_open",
        ] {
            wanted.push(format!("{metric}{{subscription=\"{name}\"}} "));
        }
    }
    // Recorded as each projection commits a batch (the stock events of this test at least).
    wanted.push("reserva_subscription_events_total{subscription=\"stock_items\"} ".into());
    // A histogram: buckets, sum and count per subscription.
    for series in [
        "bucket{subscription=\"stock_items\",le=\"+Inf\"}",
        "sum{subscription=\"stock_items\"}",
        "count{subscription=\"stock_items\"}",
    ] {
        wanted.push(format!("reserva_projection_lag_seconds_{series} "));
    }

    // Act: gauges are sampled on each scrape; the histogram needs a batch handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (missing, response) = loop {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|m| !body.contains(m.as_str()))
            .collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break (
                missing.into_iter().cloned().collect::<Vec<_>>(),
                (content_type, body),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Assert
    let (content_type, body) = response;
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(missing.is_empty(), "missing {missing:?} in:\n{body}");
}
