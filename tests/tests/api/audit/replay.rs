//! `reserva replay`: today's code over every stored event and snapshot; an event it cannot
//! read and a snapshot that is not what its events fold to are reported, and `--all` without
//! `--dry-run` drops the bad snapshot.

use super::{Store, commit, insert_raw, place_order, register, release, reserve, restock, sql};
use commands::SnapshotPolicy;
use commands::audit::history::{AsOf, ReplayError, as_of};
use commands::audit::replay::{ProblemKind, Replayed, Scope, replay};
use commands::snapshots;
use domain::stock_item::StockItem;
use serde_json::json;

async fn replayed(store: &Store, scope: Scope<'_>) -> Replayed {
    replay(&store.pool, scope, |_| {})
        .await
        .expect("replay runs")
}

/// A store snapshotting every 3 events, with stock items and orders; returns the events
/// written.
async fn traffic(store: &Store) -> u64 {
    let bus = &store.bus;
    for item in ["MUG-1", "CUP-1"] {
        register(bus, item, 20).await;
        for _ in 0..3 {
            let (held, _) = reserve(bus, item, 2).await;
            commit(bus, item, held).await;
            let (held, _) = reserve(bus, item, 1).await;
            release(bus, item, held).await;
        }
        restock(bus, item, 4).await;
        place_order(bus, item, 1).await;
    }
    2 * (1 + 3 * 4 + 1 + 1)
}

async fn snapshot_count(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM aggregate_snapshots")
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn replay_of_an_untouched_store_is_clean_and_checks_every_snapshot() {
    // Arrange
    let store = Store::new(|bus| bus.with_snapshots(SnapshotPolicy { every: 3 })).await;
    let written = traffic(&store).await;

    // Act
    let all = replayed(&store, Scope::All { dry_run: false }).await;
    let one = replayed(&store, Scope::One("stock_item", "MUG-1")).await;

    // Assert
    assert!(all.is_clean(), "{:#?}", all.problems);
    assert_eq!((all.aggregates, all.events), (4, written));
    assert_eq!(all.snapshots, 2, "one per stock item");
    assert_eq!(all.snapshots_dropped, 0);
    assert_eq!(snapshot_count(&store).await, 2);
    assert!(one.is_clean(), "{:#?}", one.problems);
    assert_eq!((one.aggregates, one.events, one.snapshots), (1, 14, 1));
}

#[tokio::test]
async fn an_event_todays_code_cannot_decode_is_reported_as_undecodable_naming_it() {
    // Arrange: a real order, then a second "OrderPlaced" no release ever wrote.
    let store = Store::bare().await;
    register(&store.bus, "MUG-1", 5).await;
    let order = place_order(&store.bus, "MUG-1", 1).await;
    let bogus = insert_raw(
        &store.pool,
        ("order", &order, 2),
        ("OrderPlaced", "1.0"),
        &json!({"OrderPlaced": {"bogus": 1}}),
    )
    .await;

    // Act
    let one = replayed(&store, Scope::One("order", &order)).await;
    let all = replayed(&store, Scope::All { dry_run: true }).await;

    // Assert: that event, and nothing else.
    for report in [&one, &all] {
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(problem.kind, ProblemKind::Undecodable);
        assert_eq!(
            (
                problem.aggregate_type.as_str(),
                problem.aggregate_id.as_str()
            ),
            ("order", order.as_str())
        );
        assert_eq!(problem.sequence, 2);
        assert_eq!(problem.event_type.as_deref(), Some("OrderPlaced"));
    }
    assert_eq!(all.aggregates, 2);
    let before = as_of(&store.pool, "order", &order, AsOf::Position(bogus - 1))
        .await
        .expect("the order before the bad event replays");
    assert!(before.is_some());
    let at = as_of(&store.pool, "order", &order, AsOf::Position(bogus)).await;
    assert!(
        matches!(at, Err(ReplayError::Undecodable { sequence: 2, .. })),
        "{at:?}"
    );
}

#[tokio::test]
async fn a_snapshot_edited_by_sql_differs_and_is_dropped_only_without_dry_run() {
    // Arrange: MUG-1's snapshot after its third (last) event, then its on_hand changed by hand.
    let store = Store::new(|bus| bus.with_snapshots(SnapshotPolicy { every: 3 })).await;
    register(&store.bus, "MUG-1", 10).await;
    restock(&store.bus, "MUG-1", 5).await;
    restock(&store.bus, "MUG-1", 5).await;
    let edited = sql(
        &store.pool,
        "UPDATE aggregate_snapshots SET payload = jsonb_set(payload, '{on_hand}', '999') \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = 'MUG-1' AND sequence = 3",
    )
    .await;
    let misled = snapshots::load::<StockItem>(&store.pool, "MUG-1", true)
        .await
        .unwrap();

    // Act
    let dry = replayed(&store, Scope::All { dry_run: true }).await;
    let kept = snapshot_count(&store).await;
    let fixing = replayed(&store, Scope::All { dry_run: false }).await;
    let after = replayed(&store, Scope::All { dry_run: true }).await;

    // Assert
    assert_eq!(edited, 1);
    assert_eq!(
        (misled.from_snapshot, misled.aggregate.on_hand()),
        (3, 999),
        "the edit is what a snapshot load would use"
    );
    for report in [&dry, &fixing] {
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(problem.kind, ProblemKind::SnapshotDiffers);
        assert_eq!(
            (problem.aggregate_id.as_str(), problem.sequence),
            ("MUG-1", 3)
        );
        assert!(problem.detail.contains("999"), "{}", problem.detail);
    }
    assert_eq!((dry.snapshots_dropped, kept), (0, 1), "a dry run keeps it");
    assert_eq!(fixing.snapshots_dropped, 1);
    assert_eq!(snapshot_count(&store).await, 0);
    assert!(after.is_clean(), "{:#?}", after.problems);
    let reloaded = snapshots::load::<StockItem>(&store.pool, "MUG-1", true)
        .await
        .unwrap();
    assert_eq!(
        (reloaded.from_snapshot, reloaded.aggregate.on_hand()),
        (0, 20)
    );
}
