//! Holds across SKUs and failed payments: every hold is resolved once, and only sales keep one.

use std::collections::{HashMap, HashSet};

use super::ledger::{
    assert_only_completed_keep_holds, assert_read_model_agrees, count, fold_stock, single_ends,
    stock_levels,
};
use super::{ORDERS, order_of, place_concurrently, register_priced_product, wait_until_all_end};
use tests::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_touching_two_skus_in_opposite_orders_all_end() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("PAIR-A", 15).await;
    app.register_product("PAIR-B", 15).await;
    let bodies = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                order_of(&["PAIR-A", "PAIR-B"])
            } else {
                order_of(&["PAIR-B", "PAIR-A"])
            }
        })
        .collect();

    // Act
    let ids = place_concurrently(&app, &ORDERS, bodies).await;
    wait_until_all_end(&app, &ORDERS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&ORDERS, &ids, &events);
    let completed = ends.get("OrderCompleted").cloned().unwrap_or_default();
    assert_eq!(completed.len(), 15, "{ends:?}");
    assert_eq!(count(&ends, "OrderStockFailed"), 25, "{ends:?}");
    for sku in ["PAIR-A", "PAIR-B"] {
        let stock = fold_stock(sku, &app.events_for("stock_item", sku).await);
        assert_eq!(stock.reserved, 0, "{sku}: nothing left held");
        assert!(
            stock.resolved(),
            "{sku}: a hold not resolved exactly once: {stock:?}"
        );
        assert_only_completed_keep_holds(sku, &stock, &ids, &completed);
        let mut sold: HashMap<&str, i64> = HashMap::new();
        for hold in stock.holds.values().filter(|h| h.commits == 1) {
            *sold.entry(hold.owner.as_str()).or_default() += hold.quantity;
        }
        assert_eq!(
            sold.len(),
            completed.len(),
            "{sku}: one sale per completed order"
        );
        assert!(
            sold.values().all(|units| *units == 1),
            "{sku}: each completed order bought exactly one unit: {sold:?}"
        );
        assert_eq!(stock.on_hand, 15 - completed.len() as i64, "{sku}");
        let (on_hand, reserved, _) = stock_levels(&app, sku).await;
        assert_eq!(
            (on_hand, reserved),
            (15 - completed.len() as i64, 0),
            "{sku}"
        );
    }
    assert_read_model_agrees(&app, &ORDERS, "rm_orders", &ids, &ends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_orders_whose_payments_all_fail_release_every_hold() {
    // Arrange: 1502 minor units end in 02, so the simulated gateway declines every payment.
    let app = spawn_app().await;
    register_priced_product(&app, "DECLINED", 10, 1502).await;
    let bodies = (0..30).map(|_| order_of(&["DECLINED"])).collect();

    // Act
    let ids = place_concurrently(&app, &ORDERS, bodies).await;
    wait_until_all_end(&app, &ORDERS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&ORDERS, &ids, &events);
    let payment_failed = count(&ends, "OrderPaymentFailed");
    let stock_failed = count(&ends, "OrderStockFailed");
    assert_eq!(payment_failed + stock_failed, 30, "{ends:?}");
    assert!(
        payment_failed >= 10,
        "the first ten holds reach payment: {ends:?}"
    );
    let stock = fold_stock("DECLINED", &app.events_for("stock_item", "DECLINED").await);
    assert_eq!(stock.commit_events, 0, "nothing sold");
    assert_eq!((stock.on_hand, stock.reserved), (10, 0));
    assert!(
        stock.resolved(),
        "a hold not resolved exactly once: {stock:?}"
    );
    assert_only_completed_keep_holds("DECLINED", &stock, &ids, &HashSet::new());
    assert_eq!(
        stock.holds.len(),
        payment_failed,
        "one hold per order that reached payment"
    );
    let reasons: HashSet<&str> = stock
        .holds
        .values()
        .flat_map(|h| h.releases.iter().map(String::as_str))
        .collect();
    assert_eq!(reasons, HashSet::from(["payment_failed"]));
    let (on_hand, reserved, available) = stock_levels(&app, "DECLINED").await;
    assert_eq!((on_hand, reserved, available), (10, 0, 10));
    assert_read_model_agrees(&app, &ORDERS, "rm_orders", &ids, &ends).await;
}
