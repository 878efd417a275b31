//! No oversell under concurrent writers, whether they share a process or not.

use commands::{CommandBus, CommandError, CommandMetadata};
use domain::stock_item::{StockItem, StockItemCommand, StockItemError};
use domain::{OrderId, Owner, Quantity, ReservationId, Sku};
use futures::future::join_all;
use tests::spawn_app;

fn reserve(order: OrderId, sku: &Sku, quantity: i64) -> StockItemCommand {
    let owner = Owner::Order(order);
    StockItemCommand::Reserve {
        reservation_id: ReservationId::for_owner(owner, sku),
        quantity: Quantity::new(quantity).unwrap(),
        owner,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
    }
}

/// Runs one reservation per bus in `buses` round-robin, `clients` of them at once.
async fn race(
    buses: &[CommandBus],
    sku: &Sku,
    clients: usize,
    quantity: i64,
) -> Vec<Result<commands::Committed, CommandError<StockItemError>>> {
    let attempts = (0..clients).map(|i| {
        let bus = buses[i % buses.len()].clone();
        let sku = sku.clone();
        tokio::spawn(async move {
            bus.execute::<StockItem>(
                sku.as_str(),
                reserve(OrderId::new_random(), &sku, quantity),
                &CommandMetadata::system("test"),
            )
            .await
        })
    });
    join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect()
}

#[tokio::test]
async fn a_hundred_concurrent_reservations_of_the_last_unit_let_exactly_one_through() {
    // Arrange: four buses stand for four service instances, so appends really race.
    let app = spawn_app().await;
    app.register_product("LAST-1", 1).await;
    let buses: Vec<_> = (0..4).map(|_| CommandBus::new(app.pool.clone())).collect();
    let sku = Sku::parse("LAST-1").unwrap();

    // Act
    let results = race(&buses, &sku, 100, 1).await;

    // Assert
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(CommandError::Rejected(StockItemError::InsufficientStock {
                    requested: 1,
                    available: 0
                }))
            )
        })
        .count();
    assert_eq!((won, refused), (1, 99), "{results:?}");
    let reserved = app
        .events_for("stock_item", "LAST-1")
        .await
        .into_iter()
        .filter(|e| e.event_type == "StockReserved")
        .count();
    assert_eq!(reserved, 1);
}

#[tokio::test]
async fn two_concurrent_orders_of_three_against_five_units_leave_exactly_one_holding() {
    let app = spawn_app().await;
    app.register_product("FIVE", 5).await;
    let buses: Vec<_> = (0..2).map(|_| CommandBus::new(app.pool.clone())).collect();
    let sku = Sku::parse("FIVE").unwrap();

    let results = race(&buses, &sku, 2, 3).await;

    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().any(|r| matches!(
        r,
        Err(CommandError::Rejected(StockItemError::InsufficientStock {
            requested: 3,
            available: 2
        }))
    )));
    let item = app.bus.load::<StockItem>("FIVE").await.unwrap();
    assert_eq!(
        (item.on_hand(), item.reserved(), item.available()),
        (5, 3, 2)
    );
}

#[tokio::test]
async fn concurrent_reservations_never_hold_more_than_on_hand() {
    let app = spawn_app().await;
    app.register_product("TEN", 10).await;
    let buses: Vec<_> = (0..3).map(|_| CommandBus::new(app.pool.clone())).collect();
    let sku = Sku::parse("TEN").unwrap();

    let results = race(&buses, &sku, 60, 1).await;

    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    let events = app.events_for("stock_item", "TEN").await;
    let held: i64 = events
        .iter()
        .filter(|e| e.event_type == "StockReserved")
        .map(|e| e.payload["StockReserved"]["quantity"].as_i64().unwrap())
        .sum();
    assert_eq!(held, 10);
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn concurrent_restocks_over_http_lose_no_update() {
    let app = spawn_app().await;
    app.register_product("RESTOCK", 0).await;

    let body = serde_json::json!({"quantity": 2});
    let requests = (0..40).map(|_| app.post("/api/v1/stock-items/RESTOCK/restock", &body));
    let statuses: Vec<u16> = join_all(requests)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();

    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let item = app.bus.load::<StockItem>("RESTOCK").await.unwrap();
    assert_eq!(item.on_hand(), 80);
    let restocks = app
        .events_for("stock_item", "RESTOCK")
        .await
        .iter()
        .filter(|e| e.event_type == "StockRestocked")
        .count();
    assert_eq!(restocks, 40);
}

#[tokio::test]
async fn a_stale_cached_aggregate_in_another_instance_cannot_oversell() {
    // Arrange: instance A warms its cache with on_hand = 1; instance B then takes the unit.
    let app = spawn_app().await;
    let (a, b) = (
        CommandBus::new(app.pool.clone()),
        CommandBus::new(app.pool.clone()),
    );
    let sku = Sku::parse("STALE").unwrap();
    let meta = CommandMetadata::system("test");
    let register = StockItemCommand::Register {
        sku: sku.clone(),
        name: "stale".into(),
        kind: domain::stock_item::StockKind::Product,
        quantity: 1,
        low_stock_threshold: 0,
        unit_price: domain::Money::new(1, domain::Currency::parse("USD").unwrap()).unwrap(),
    };
    a.execute::<StockItem>("STALE", register, &meta)
        .await
        .unwrap();
    b.execute::<StockItem>("STALE", reserve(OrderId::new_random(), &sku, 1), &meta)
        .await
        .unwrap();

    // Act: A decides on its cached (stale) state first.
    let late = a
        .execute::<StockItem>("STALE", reserve(OrderId::new_random(), &sku, 1), &meta)
        .await;

    // Assert: the append conflicted, A reloaded, and the rule answered.
    assert!(
        matches!(
            late,
            Err(CommandError::Rejected(
                StockItemError::InsufficientStock { .. }
            ))
        ),
        "{late:?}"
    );
    let events = app.events_for("stock_item", "STALE").await;
    let reserved = events
        .iter()
        .filter(|e| e.event_type == "StockReserved")
        .count();
    assert_eq!(reserved, 1);
}

#[tokio::test]
async fn a_command_writing_several_events_reports_the_position_of_the_last() {
    let app = spawn_app().await;
    app.register_product("MULTI", 2).await; // low-stock threshold 1
    let sku = Sku::parse("MULTI").unwrap();

    let committed = app
        .bus
        .execute::<StockItem>(
            "MULTI",
            reserve(OrderId::new_random(), &sku, 2),
            &CommandMetadata::system("test"),
        )
        .await
        .unwrap();

    let events = app.events_for("stock_item", "MULTI").await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "StockItemRegistered",
            "StockReserved",
            "LowStockReached",
            "StockDepleted"
        ]
    );
    assert_eq!(committed.events, 3);
    assert_eq!(committed.position, events.last().unwrap().global_position);
}
