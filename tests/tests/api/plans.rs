//! A read model's batch reads and writes its rows by primary key whatever the table's size or
//! statistics: even a batch touching every row of a small, never-analyzed table (where the
//! planner would otherwise pick a sequential scan) scans none of it, so nothing can turn into
//! a scan per batch as the table grows.

use commands::CommandMetadata;
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand};
use futures::future::join_all;
use tests::{eventually, register_product_command, spawn_app_without_sagas};

const ITEMS: usize = 200;
const TOUCHED: usize = 200;

#[tokio::test]
async fn a_large_batch_on_a_young_table_is_applied_through_the_primary_key() {
    // Arrange: a table of 200 rows that autovacuum has not analyzed.
    let app = spawn_app_without_sagas().await;
    sqlx::query("ALTER TABLE rm_stock_items SET (autovacuum_enabled = false)")
        .execute(&app.pool)
        .await
        .unwrap();
    let system = CommandMetadata::system("test");
    let skus: Vec<String> = (0..ITEMS).map(|i| format!("KEY-{i:05}")).collect();
    for chunk in skus.chunks(100) {
        join_all(chunk.iter().map(|sku| {
            app.bus
                .execute::<StockItem>(sku, register_product_command(sku, 1, 0), &system)
        }))
        .await
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    }
    app.catch_up().await;

    // Act: one batch restocking every row (a transaction holding an xid keeps the feed shut
    // until all of it is appended).
    let mut gate = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *gate)
        .await
        .unwrap();
    let quantity = Quantity::new(1).unwrap();
    join_all(skus[..TOUCHED].iter().map(|sku| {
        app.bus
            .execute::<StockItem>(sku, StockItemCommand::Restock { quantity }, &system)
    }))
    .await
    .into_iter()
    .for_each(|r| {
        r.unwrap();
    });
    gate.commit().await.unwrap();
    app.catch_up().await;

    // Assert: the runner's statistics (flushed by its backend within seconds) show its index
    // lookups, and no sequential scan ever read a row (the migrations' index builds scanned
    // the table while it was empty).
    let (seq_read, idx_scan) = eventually("the runner's table statistics", || async {
        let mut conn = app.pool.acquire().await.unwrap();
        sqlx::query("SET stats_fetch_consistency = none")
            .execute(&mut *conn)
            .await
            .unwrap();
        let (seq, idx): (i64, i64) = sqlx::query_as(
            "SELECT seq_tup_read, COALESCE(idx_scan, 0) FROM pg_stat_user_tables \
             WHERE relname = 'rm_stock_items'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        (idx >= TOUCHED as i64).then_some((seq, idx))
    })
    .await;
    assert_eq!(
        seq_read, 0,
        "rows read by sequential scans ({idx_scan} index scans)"
    );
    let restocked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_stock_items WHERE on_hand = 2")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(restocked, TOUCHED as i64);
}
