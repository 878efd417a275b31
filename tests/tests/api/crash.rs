//! A projector killed between applying a batch and committing it loses nothing and applies
//! nothing twice: the batch rolls back with its checkpoint, and the next runner redoes it.

use async_trait::async_trait;
use commands::{CommandBus, CommandError, CommandMetadata};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand};
use domain::{OrderId, Owner, Quantity, ReservationId};
use feed::{
    Checkpoint, FeedEvent, Handler, HandlerError, Subscription, SubscriptionOptions, checkpoint,
};
use futures::future::join_all;
use projections::rebuild::{self, Phase, Progress};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::{fresh_database, register_product_command, wait_until_caught_up};
use tokio::sync::{oneshot, watch};

const SKUS: [&str; 5] = ["CRASH-1", "CRASH-2", "CRASH-3", "CRASH-4", "CRASH-5"];

/// The real projector, except that the first batch from its `nth` on that leaves a reservation
/// open (so that losing or doubling it would show: a reservation made and closed in one batch
/// nets to nothing), once applied, never returns: the runner hangs with the batch's rows
/// written and its transaction open. The test hears of it, with the checkpoints of that
/// batch's events.
struct StallsOnNth {
    inner: Arc<dyn Handler>,
    calls: AtomicUsize,
    nth: usize,
    stalled: Mutex<Option<oneshot::Sender<Vec<Checkpoint>>>>,
}

#[async_trait]
impl Handler for StallsOnNth {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        self.inner.wants(aggregate_type)
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        self.inner.handle(conn, events).await?;
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if calls < self.nth || !leaves_a_reservation_open(events) {
            return Ok(());
        }
        let checkpoints = events.iter().map(|e| e.checkpoint).collect();
        if let Some(stalled) = self.stalled.lock().unwrap().take() {
            let _ = stalled.send(checkpoints);
        }
        std::future::pending().await
    }
}

/// Whether `events` reserve stock that they do not also commit or release.
fn leaves_a_reservation_open(events: &[FeedEvent]) -> bool {
    let mut open = std::collections::HashSet::new();
    for event in events {
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        let id = |variant: &str| payload[variant]["reservation_id"].to_string();
        match event.event_type.as_str() {
            "StockReserved" => {
                open.insert(id("StockReserved"));
            }
            "ReservationCommitted" => {
                open.remove(&id("ReservationCommitted"));
            }
            "ReservationReleased" => {
                open.remove(&id("ReservationReleased"));
            }
            _ => {}
        }
    }
    !open.is_empty()
}

fn register(sku: &str) -> StockItemCommand {
    register_product_command(sku, 20, 5)
}

/// One writer's mix of restocks and reservations (some then committed or released), spread
/// over every SKU. Insufficient stock is a fine answer; anything else fails the test.
async fn write(bus: CommandBus, writer: usize, operations: usize) {
    let meta = CommandMetadata::system("crash-test");
    for i in 0..operations {
        let sku = SKUS[(writer + i) % SKUS.len()];
        let command = if i % 4 == 0 {
            StockItemCommand::Restock {
                quantity: Quantity::new(1 + (i % 3) as i64).unwrap(),
            }
        } else {
            StockItemCommand::Reserve {
                reservation_id: ReservationId::new_random(),
                quantity: Quantity::new(1 + (i % 2) as i64).unwrap(),
                owner: Owner::Order(OrderId::new_random()),
                expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
            }
        };
        let reservation_id = match &command {
            StockItemCommand::Reserve { reservation_id, .. } => Some(*reservation_id),
            _ => None,
        };
        match bus.execute::<StockItem>(sku, command, &meta).await {
            Ok(_) => {}
            Err(CommandError::Rejected(_)) => continue,
            Err(error) => panic!("writer {writer}: {error:?}"),
        }
        let Some(reservation_id) = reservation_id else {
            continue;
        };
        let follow_up = match i % 5 {
            0 => StockItemCommand::CommitReservation { reservation_id },
            1 => StockItemCommand::ReleaseReservation {
                reservation_id,
                reason: ReleaseReason::Cancelled,
            },
            _ => continue,
        };
        bus.execute::<StockItem>(sku, follow_up, &meta)
            .await
            .unwrap_or_else(|e| panic!("writer {writer}: {e:?}"));
    }
}

/// The whole read model, row by row, every column.
async fn snapshot(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(t) FROM rm_stock_items t ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

// Long on purpose: the crash is staged step by step (batch held, runner killed, successor
// takes over) and each step's state is asserted where it happens.
#[tokio::test]
async fn a_projector_killed_before_its_commit_neither_loses_nor_doubles_an_event() {
    // Arrange: the stock projector, rigged to hang mid-batch, and writers racing it.
    let database = fresh_database(16).await;
    let pool = database.pool.clone();
    commands::MIGRATOR.run(&pool).await.unwrap();
    let projection = projections::catalog::find("stock_items").unwrap();
    let bus = CommandBus::new(pool.clone());
    // Small batches: a projector that falls behind the writers (a slow machine, or an open
    // transaction elsewhere in the cluster holding the feed back) must still make a third
    // call while the writers run, instead of taking everything in one or two batches.
    let options = SubscriptionOptions {
        poll_interval: Duration::from_millis(50),
        standby_interval: Duration::from_millis(50),
        batch_size: 10,
        ..Default::default()
    };
    let (stalled_tx, stalled_rx) = oneshot::channel();
    let rigged = Arc::new(StallsOnNth {
        inner: projection.handler(projection.table()),
        calls: AtomicUsize::new(0),
        nth: 3,
        stalled: Mutex::new(Some(stalled_tx)),
    });
    let doomed = Subscription::new(
        rigged,
        pool.clone(),
        bus.feed_signal().clone(),
        options.clone(),
    )
    .spawn();
    let meta = CommandMetadata::system("crash-test");
    for sku in SKUS {
        bus.execute::<StockItem>(sku, register(sku), &meta)
            .await
            .unwrap();
    }
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write(bus.clone(), w, 60)))
        .collect();

    // Act: kill the runner while its batch is applied but not committed, then start afresh.
    let stalled = tokio::time::timeout(Duration::from_secs(20), stalled_rx)
        .await
        .expect("the rigged projector stalls")
        .unwrap();
    doomed.abort();
    let mut conn = pool.acquire().await.unwrap();
    let at_crash = checkpoint::stored(&mut conn, projection.name())
        .await
        .unwrap();
    drop(conn);
    let _runner = Subscription::new(
        projection.handler(projection.table()),
        pool.clone(),
        bus.feed_signal().clone(),
        options,
    )
    .spawn();
    for writer in join_all(writers).await {
        writer.expect("writer");
    }
    let end = wait_until_caught_up(&pool, projection.name()).await;
    let caught_up = snapshot(&pool).await;
    let (progress, _) = watch::channel(Progress {
        phase: Phase::Preparing,
        applied: 0,
        total: 0,
    });
    let report = rebuild::rebuild(&pool, projection, &progress)
        .await
        .unwrap();
    wait_until_caught_up(&pool, projection.name()).await;
    let rebuilt = snapshot(&pool).await;

    // Assert: the stalled batch was never committed, yet the read model holds every event
    // exactly once: identical to a rebuild from zero and to the aggregates themselves.
    assert!(
        at_crash < stalled[0],
        "the checkpoint {at_crash} passed the uncommitted batch starting at {}",
        stalled[0]
    );
    assert!(report.checkpoint >= end);
    assert_eq!(caught_up.len(), SKUS.len());
    assert_eq!(caught_up, rebuilt);
    for row in &caught_up {
        let sku = row["id"].as_str().unwrap();
        let item = bus.load::<StockItem>(sku).await.unwrap();
        let expected = [
            i64::from(item.on_hand()),
            i64::from(item.reserved()),
            i64::from(item.available()),
        ];
        let actual = ["on_hand", "reserved", "available"].map(|c| row[c].as_i64().unwrap());
        assert_eq!(actual, expected, "{sku}: {row}");
        let last: i64 =
            sqlx::query_scalar("SELECT max(global_position) FROM events WHERE aggregate_id = $1")
                .bind(sku)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(row["position"], last, "{sku}");
    }
    let letters: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(letters, 0);
}
