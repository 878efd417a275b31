//! Migration 0013 chains the events a store already holds: after it, `audit verify` finds the
//! old events intact, new ones chain on from them, and an edit of an old one is caught.

use commands::audit::{self, FindingKind};
use commands::{CommandBus, CommandMetadata};
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand};
use tests::{fresh_database, register_product_command};

async fn restock(bus: &CommandBus, sku: &str) {
    let command = StockItemCommand::Restock {
        quantity: Quantity::new(3).unwrap(),
    };
    bus.execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_store_written_before_the_chain_is_chained_by_the_migration_and_verifies_clean() {
    // Arrange: events written, then the schema taken back to before migration 0013.
    let database = fresh_database(4).await;
    let pool = database.pool.clone();
    commands::MIGRATOR.run(&pool).await.unwrap();
    let bus = CommandBus::new(pool.clone());
    let metadata = CommandMetadata::system("test");
    for sku in ["OLD-1", "OLD-2"] {
        bus.execute::<StockItem>(sku, register_product_command(sku, 5, 0), &metadata)
            .await
            .unwrap();
        restock(&bus, sku).await;
        restock(&bus, sku).await;
    }
    commands::MIGRATOR.undo(&pool, 12).await.unwrap();
    let unchained: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'events' AND column_name = 'hash'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unchained, 0, "the store is back to having no chain");

    // Act: the migration chains it; a new event chains on from the migrated ones.
    commands::MIGRATOR.run(&pool).await.unwrap();
    let after = CommandBus::new(pool.clone());
    restock(&after, "OLD-1").await;
    let clean = audit::verify(&pool, 0, None, |_| {}).await.unwrap();
    sqlx::query(
        "UPDATE events SET payload = '{\"StockRestocked\":{\"quantity\":300,\"on_hand\":305}}' \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = 'OLD-2' AND sequence = 2",
    )
    .execute(&pool)
    .await
    .unwrap();
    let edited = audit::verify(&pool, 0, None, |_| {}).await.unwrap();

    // Assert
    assert!(clean.is_clean(), "{:?}", clean.findings);
    assert_eq!(clean.events, 7);
    assert_eq!(edited.findings.len(), 1, "{:?}", edited.findings);
    let finding = &edited.findings[0];
    assert_eq!(finding.kind, FindingKind::Modified);
    assert_eq!(
        (finding.aggregate_id.as_str(), finding.sequence),
        ("OLD-2", Some(2))
    );
}
