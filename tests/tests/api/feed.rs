//! The ordered feed: a transaction that commits after a later one is never skipped.

use async_trait::async_trait;
use commands::CommandMetadata;
use domain::stock_item::{StockItemEvent, StockKind};
use domain::{Currency, Money, Sku};
use feed::{
    Checkpoint, FeedEvent, FeedSignal, Handler, HandlerError, Subscription, SubscriptionOptions,
};
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tests::{eventually, fresh_database, stored_checkpoint};

/// Records every event it is handed, in the runner's transaction, in the order handed.
struct Recorder {
    name: &'static str,
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn wants(&self, _aggregate_type: &str) -> bool {
        true
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            sqlx::query(
                "INSERT INTO seen (subscription, transaction_id, global_position) \
                 VALUES ($1, $2, $3)",
            )
            .bind(self.name)
            .bind(event.checkpoint.transaction_id)
            .bind(event.position())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// No primary key on the event: a duplicate delivery must show up as a second row rather than
/// as a handler error that would be retried and parked out of sight.
const CREATE_SEEN: &str = "CREATE TABLE seen (id bigserial PRIMARY KEY, \
    subscription text NOT NULL, transaction_id bigint NOT NULL, global_position bigint NOT NULL)";

/// Appends a real `StockItemRegistered` for `sku` on `conn` (inside whatever transaction it
/// has open) and returns the event's checkpoint.
async fn append_registration(conn: &mut PgConnection, sku: &str) -> Checkpoint {
    let event = StockItemEvent::StockItemRegistered {
        sku: Sku::parse(sku).unwrap(),
        name: format!("Item {sku}"),
        kind: StockKind::Product,
        on_hand: 5,
        low_stock_threshold: 1,
        unit_price: Money::new(1500, Currency::parse("MXN").unwrap()).unwrap(),
    };
    let metadata = CommandMetadata::system("test").to_map();
    let (transaction_id, global_position): (i64, i64) = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata) \
         VALUES ('stock_item', $1, 1, 'StockItemRegistered', '1.0', $2::text::json, $3::text::json) \
         RETURNING transaction_id::text::bigint, global_position",
    )
    .bind(sku)
    .bind(serde_json::to_string(&event).unwrap())
    .bind(serde_json::to_string(&metadata).unwrap())
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    Checkpoint {
        transaction_id,
        global_position,
    }
}

/// What subscription `name` has recorded, in the order it was handed the events.
async fn seen_by(pool: &PgPool, name: &str) -> Vec<Checkpoint> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id, global_position FROM seen WHERE subscription = $1 ORDER BY id",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(transaction_id, global_position)| Checkpoint {
            transaction_id,
            global_position,
        })
        .collect()
}

/// Waits until `name` has recorded at least `count` events; returns all it recorded.
async fn wait_for_seen(pool: &PgPool, name: &str, count: usize) -> Vec<Checkpoint> {
    eventually(&format!("{name} to record {count} events"), || async {
        let seen = seen_by(pool, name).await;
        (seen.len() >= count).then_some(seen)
    })
    .await
}

// Long on purpose: the interleaving of two transactions is the test, written in order.
#[tokio::test]
async fn a_late_committing_transaction_is_never_skipped() {
    // Arrange: two subscriptions, running, that have handled a first event.
    let database = fresh_database(8).await;
    let pool = &database.pool;
    commands::MIGRATOR.run(pool).await.unwrap();
    sqlx::query(CREATE_SEEN).execute(pool).await.unwrap();
    let options = SubscriptionOptions {
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let names = ["feed_test_one", "feed_test_two"];
    let _runners: Vec<_> = names
        .iter()
        .map(|&name| {
            let handler = Arc::new(Recorder { name });
            Subscription::new(
                handler,
                pool.clone(),
                FeedSignal::default(),
                options.clone(),
            )
            .spawn()
        })
        .collect();
    let first = append_registration(&mut pool.acquire().await.unwrap(), "FEED-FIRST").await;
    for name in names {
        assert_eq!(wait_for_seen(pool, name, 1).await, [first]);
    }

    // Act 1: `early` takes its xid, then `late` (A) takes its xid and position, then `later`
    // (B) commits, then `early` commits. A stays open.
    let mut early_tx = pool.begin().await.unwrap();
    let early = append_registration(&mut early_tx, "FEED-EARLY").await;
    let mut late_tx = pool.begin().await.unwrap();
    let late = append_registration(&mut late_tx, "FEED-LATE").await;
    let later = append_registration(&mut pool.acquire().await.unwrap(), "FEED-LATER").await;
    early_tx.commit().await.unwrap();

    // Assert 1: the subscribers read the feed after B committed (they got `early`, which
    // committed after B) and stopped at A: B was not handed out, no checkpoint passed A.
    assert!(
        late.global_position < later.global_position,
        "A holds the lower position: a reader by position alone would pass it"
    );
    for name in names {
        assert_eq!(wait_for_seen(pool, name, 2).await, [first, early], "{name}");
    }
    let mut conn = pool.acquire().await.unwrap();
    let handed: Vec<Checkpoint> = feed::read_after(&mut conn, Checkpoint::START, &[], 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.checkpoint)
        .collect();
    assert_eq!(handed, [first, early], "the feed stops at the open A");
    let after_early = feed::read_after(&mut conn, early, &[], 100).await.unwrap();
    assert!(after_early.is_empty(), "{after_early:?}");
    assert!(
        feed::held_back(&mut conn, early, &[]).await.unwrap(),
        "B is committed but held back behind A"
    );
    let look = feed::read::read_next(&mut conn, early, 100).await.unwrap();
    assert!(
        look.events.is_empty() && look.held_back,
        "the runner's one-statement look sees B held back: {look:?}"
    );
    for name in names {
        let at = stored_checkpoint(pool, name).await;
        assert_eq!(at, early, "{name}");
        assert!(at < late, "{name} passed the open transaction");
        assert_eq!(seen_by(pool, name).await, [first, early], "{name}");
    }

    // Act 2
    late_tx.commit().await.unwrap();

    // Assert 2: every subscriber sees A and B, each once, in (transaction_id, position) order.
    let expected = [first, early, late, later];
    let mut sorted = expected;
    sorted.sort();
    assert_eq!(
        sorted, expected,
        "feed order is (transaction_id, global_position)"
    );
    for name in names {
        eventually(&format!("{name} to reach B"), || async {
            (stored_checkpoint(pool, name).await == later).then_some(())
        })
        .await;
        assert_eq!(seen_by(pool, name).await, expected, "{name}");
    }
    let handed: Vec<Checkpoint> = feed::read_after(&mut conn, Checkpoint::START, &[], 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.checkpoint)
        .collect();
    assert_eq!(handed, expected);
    let look = feed::read::read_next(&mut conn, early, 100).await.unwrap();
    let looked: Vec<Checkpoint> = look.events.iter().map(|e| e.checkpoint).collect();
    assert_eq!(looked, [late, later]);
    assert!(!look.held_back, "nothing is open any more");
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
}

/// A reader that found nothing to read asks `held_back` whether to look again. Its answer
/// must be yes for any committed event after the checkpoint, not only for one still behind an
/// open transaction: the two statements see different snapshots, and the transaction that
/// held the event back during the read can have ended before the check, leaving a readable
/// event that no wake-up will announce (a runner went to sleep until its next poll).
#[tokio::test]
async fn an_event_readable_by_the_time_of_the_check_still_means_look_again() {
    // Arrange: one committed event, no transaction open in this database.
    let database = fresh_database(4).await;
    let pool = &database.pool;
    commands::MIGRATOR.run(pool).await.unwrap();
    let event = append_registration(&mut pool.acquire().await.unwrap(), "FEED-AGAIN").await;
    let mut conn = pool.acquire().await.unwrap();

    // Act + Assert: before the event, look again; at it, nothing more.
    assert!(
        feed::held_back(&mut conn, Checkpoint::START, &[])
            .await
            .unwrap(),
        "a committed event after the checkpoint must send the reader back to the feed"
    );
    assert!(!feed::held_back(&mut conn, event, &[]).await.unwrap());
}

/// A batch starts by claiming its checkpoint under the shared swap lock, in one statement
/// whose snapshot is taken before the lock is granted. When the lock waited for a rebuild's
/// swap, the claim must return the checkpoint the swap stored, not the one from before it: a
/// batch read from the old one would apply events the new table already holds.
#[tokio::test]
async fn a_claim_that_waited_for_a_swap_returns_the_checkpoint_the_swap_stored() {
    // Arrange: a subscription at one event; a swap holds the lock and has moved it to another.
    let database = fresh_database(4).await;
    let pool = &database.pool;
    commands::MIGRATOR.run(pool).await.unwrap();
    let name = "feed_test_claim";
    let first = append_registration(&mut pool.acquire().await.unwrap(), "FEED-CLAIM-1").await;
    let second = append_registration(&mut pool.acquire().await.unwrap(), "FEED-CLAIM-2").await;
    let mut conn = pool.acquire().await.unwrap();
    feed::checkpoint::ensure_row(&mut conn, name).await.unwrap();
    feed::checkpoint::store(&mut conn, name, first)
        .await
        .unwrap();
    let mut swap = pool.begin().await.unwrap();
    feed::locks::swap_exclusive(&mut swap, name).await.unwrap();
    feed::checkpoint::store(&mut swap, name, second)
        .await
        .unwrap();

    // Act: a batch claims while the swap is open, and waits; then the swap commits.
    let claiming = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let claimed = feed::checkpoint::claim(&mut tx, name).await.unwrap();
            tx.commit().await.unwrap();
            claimed
        })
    };
    eventually("the claim to wait for the swap lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        (waiting > 0).then_some(())
    })
    .await;
    swap.commit().await.unwrap();

    // Assert
    assert_eq!(claiming.await.unwrap(), Some(second));
}
