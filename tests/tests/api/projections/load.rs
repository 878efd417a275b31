//! Ten thousand concurrent events: the live rows equal the write side and a rebuild from zero.

use super::writer::{Expected, Writer};
use super::{
    PLENTY, PRODUCTS, SLOTS, TARGET_EVENTS, WRITERS, assert_rows_are_at_their_last_event,
    assert_stock_matches_the_write_side, meta, product, progress, quantity, register, slot,
    table_oid,
};
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use futures::future::join_all;
use projections::catalog;
use projections::rebuild::{self, Phase};
use std::collections::BTreeMap;
use tests::{TestApp, spawn_app_without_sagas};
use uuid::Uuid;

/// Every read model's table as JSON rows, in catalog order.
async fn snapshot_all(app: &TestApp) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for projection in catalog::all() {
        out.push((projection.table(), app.snapshot(projection.table()).await));
    }
    out
}

async fn events_of(app: &TestApp, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&app.pool)
        .await
        .expect("count events")
}

/// Asserts the live read models agree with what the writers did and with the event store.
async fn assert_read_models_match_the_write_side(app: &TestApp, expected: &Expected) {
    for projection in catalog::all() {
        assert_rows_are_at_their_last_event(app, projection).await;
    }
    let orders: Vec<(Uuid, String, Option<Uuid>)> =
        sqlx::query_as("SELECT id, status, payment_id FROM rm_orders")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let orders: BTreeMap<_, _> = orders.into_iter().map(|(i, s, p)| (i, (s, p))).collect();
    assert!(
        orders == expected.orders,
        "rm_orders differs from the writers' orders"
    );
    let bookings: Vec<(Uuid, String, Option<Uuid>)> =
        sqlx::query_as("SELECT id, status, payment_id FROM rm_bookings")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let bookings: BTreeMap<_, _> = bookings.into_iter().map(|(i, s, p)| (i, (s, p))).collect();
    assert!(bookings == expected.bookings, "rm_bookings differs");
    let payments: Vec<(Uuid, String, Uuid)> =
        sqlx::query_as("SELECT id, status, owner_id FROM rm_payments")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let payments: BTreeMap<_, _> = payments.into_iter().map(|(i, s, o)| (i, (s, o))).collect();
    assert!(payments == expected.payments, "rm_payments differs");
    assert_stock_matches_the_write_side(app).await;
}

// Long on purpose: load, live rows, rebuild and comparison form one experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_events_fold_into_the_rows_a_rebuild_from_zero_produces() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    let writer = Writer::new(&app);
    for i in 0..PRODUCTS {
        writer
            .run::<StockItem>(
                product(i).as_str(),
                register(&product(i), StockKind::Product, PLENTY, 10),
            )
            .await;
    }
    for i in 0..SLOTS {
        let starts_at = chrono::Utc::now() + chrono::Duration::days(30 + i as i64);
        writer
            .run::<StockItem>(
                slot(i).as_str(),
                register(&slot(i), StockKind::TimeSlot { starts_at }, PLENTY, 0),
            )
            .await;
    }

    // Act: concurrent writers while the server's projections run.
    let writers = (0..WRITERS).map(|w| tokio::spawn(writer.clone().drive(w)));
    let expected = join_all(writers)
        .await
        .into_iter()
        .map(|r| r.expect("writer task"))
        .fold(Expected::default(), Expected::merge);
    let events = app.event_count().await;
    app.catch_up().await;
    let live = snapshot_all(&app).await;

    // Assert: the live read models equal the write side.
    assert!(events >= TARGET_EVENTS as i64, "only {events} events");
    assert!(expected.orders.len() > 100 && expected.bookings.len() > 50);
    assert_read_models_match_the_write_side(&app, &expected).await;

    // Act: rebuild every projection from position zero.
    for projection in catalog::all() {
        let table = projection.table();
        let before = table_oid(&app, table).await;
        let progress = progress();
        let report = rebuild::rebuild(&app.pool, projection, &progress)
            .await
            .unwrap_or_else(|e| panic!("rebuild {}: {e}", projection.name()));
        assert_eq!(
            report.events as i64,
            events_of(&app, projection.aggregate_type()).await,
            "{table}: the rebuild applied every event of its type"
        );
        assert_eq!(progress.borrow().phase, Phase::Done);
        assert_ne!(table_oid(&app, table).await, before, "{table} was swapped");
    }
    let rebuilt = snapshot_all(&app).await;

    // Assert: row for row, the rebuilt tables are the live ones.
    for ((table, live_rows), (_, rebuilt_rows)) in live.iter().zip(&rebuilt) {
        assert_eq!(live_rows.len(), rebuilt_rows.len(), "{table} row count");
        let first_difference = live_rows.iter().zip(rebuilt_rows).find(|(a, b)| a != b);
        assert!(
            first_difference.is_none(),
            "{table} differs after rebuild: {first_difference:?}"
        );
    }
    // The live runners carry on in the swapped-in tables.
    let restock = StockItemCommand::Restock {
        quantity: quantity(7),
    };
    let committed = app
        .bus
        .execute::<StockItem>("P-00", restock, &meta())
        .await
        .unwrap();
    let expected_on_hand = app.bus.load::<StockItem>("P-00").await.unwrap().on_hand();
    let (status, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/P-00?min_position={}",
            committed.position.unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["on_hand"], i64::from(expected_on_hand));
}
