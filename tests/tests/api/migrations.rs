//! Migrations are reversible.

use sqlx::PgPool;
use tests::fresh_database;

async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_apply_revert_and_apply_again() {
    // Arrange
    let database = fresh_database(2).await;
    let pool = database.pool.clone();

    // Act + Assert
    commands::MIGRATOR.run(&pool).await.unwrap();
    let applied = tables(&pool).await;
    assert_eq!(
        applied,
        [
            "aggregate_snapshots",
            "audit_checkpoint_heads",
            "audit_checkpoints",
            "dead_letters",
            "events",
            "idempotency_keys",
            "rm_bookings",
            "rm_orders",
            "rm_payments",
            "rm_stock_items",
            "saga_instances",
            "saga_steps",
            "snapshots",
            "subscriptions",
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_endpoints"
        ]
    );

    commands::MIGRATOR.undo(&pool, 0).await.unwrap();
    assert!(tables(&pool).await.is_empty());

    commands::MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(tables(&pool).await, applied);
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_name = 'events' ORDER BY ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for column in ["global_position", "transaction_id", "recorded_at", "hash"] {
        assert!(columns.iter().any(|c| c == column), "{column} missing");
    }
}
