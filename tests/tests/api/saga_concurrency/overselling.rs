//! The last units and the last seats: two hundred orders for ten, fifty bookings for twenty.

use super::ledger::{
    assert_only_completed_keep_holds, assert_read_model_agrees, count, fold_stock, single_ends,
    stock_levels,
};
use super::{BOOKINGS, ORDERS, order_of, place_concurrently, register_slot, wait_until_all_end};
use serde_json::json;
use tests::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_customers_ordering_the_last_ten_units_never_oversell() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("LAST-TEN", 10).await;
    let bodies = (0..200).map(|_| order_of(&["LAST-TEN"])).collect();

    // Act
    let ids = place_concurrently(&app, &ORDERS, bodies).await;
    wait_until_all_end(&app, &ORDERS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&ORDERS, &ids, &events);
    let completed = ends.get("OrderCompleted").cloned().unwrap_or_default();
    assert_eq!(completed.len(), 10, "{ends:?}");
    assert_eq!(count(&ends, "OrderStockFailed"), 190, "{ends:?}");
    let stock = fold_stock("LAST-TEN", &app.events_for("stock_item", "LAST-TEN").await);
    assert_eq!(stock.commit_events, 10, "never more than ten sales");
    assert_eq!(stock.committed, completed.len() as i64);
    assert_eq!(stock.reserved, 0, "nothing left held");
    assert_eq!(stock.on_hand + stock.committed, stock.registered);
    assert!(
        stock.resolved(),
        "a hold not resolved exactly once: {stock:?}"
    );
    assert_only_completed_keep_holds("LAST-TEN", &stock, &ids, &completed);
    let (on_hand, reserved, available) = stock_levels(&app, "LAST-TEN").await;
    assert_eq!((on_hand + stock.committed, reserved), (10, 0));
    assert_eq!((on_hand, available), (0, 0));
    assert_read_model_agrees(&app, &ORDERS, "rm_orders", &ids, &ends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bookings_for_a_twenty_seat_slot_never_overbook() {
    // Arrange
    let app = spawn_app().await;
    register_slot(&app, "SLOT-20", 20).await;
    let bodies = (0..50)
        .map(|_| json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "SLOT-20", "guests": 1}))
        .collect();

    // Act
    let ids = place_concurrently(&app, &BOOKINGS, bodies).await;
    wait_until_all_end(&app, &BOOKINGS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&BOOKINGS, &ids, &events);
    let confirmed = ends.get("BookingConfirmed").cloned().unwrap_or_default();
    assert_eq!(confirmed.len(), 20, "{ends:?}");
    assert_eq!(count(&ends, "BookingSeatsUnavailable"), 30, "{ends:?}");
    let stock = fold_stock("SLOT-20", &app.events_for("stock_item", "SLOT-20").await);
    assert_eq!(stock.commit_events, 20, "never more than twenty seats sold");
    assert_eq!(stock.committed, 20);
    assert_eq!(stock.reserved, 0);
    assert_eq!(stock.on_hand + stock.committed, stock.registered);
    assert!(
        stock.resolved(),
        "a hold not resolved exactly once: {stock:?}"
    );
    assert_only_completed_keep_holds("SLOT-20", &stock, &ids, &confirmed);
    let (on_hand, reserved, available) = stock_levels(&app, "SLOT-20").await;
    assert_eq!((on_hand, reserved, available), (0, 0, 0));
    assert_read_model_agrees(&app, &BOOKINGS, "rm_bookings", &ids, &ends).await;
}
