//! Lists: orders per customer and by status, the low-stock list, time slots by start.

use super::{
    column, get_ok, meta, order_command, place_order, register_product, register_slot, strings,
};
use domain::order::OrderCommand;
use domain::stock_item::{StockItem, StockItemCommand};
use domain::{OrderId, Owner, Quantity, ReservationId, Sku};
use serde_json::json;
use tests::spawn_app_without_sagas;
use uuid::Uuid;

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
        by: domain::order::Canceller::Customer,
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
