//! A poisoned event is parked, its aggregate's later events wait behind it, everything else
//! flows; an operator's retry or skip releases the chain in order.
//!
//! Shared here: the poisonable subscription, the scene it runs in, and what poisoning leaves.

use async_trait::async_trait;
use commands::{CommandBus, CommandMetadata};
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand};
use feed::dead_letters::{self, DeadLetter};
use feed::{
    FeedEvent, Handler, HandlerError, Subscription, SubscriptionHandle, SubscriptionOptions,
};
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tests::{
    TestDatabase, eventually, fresh_database, register_product_command, wait_until_caught_up,
};

mod admin_api;
mod retry_and_skip;

const NAME: &str = "poison_test";
const POISONED: &str = "POISON";

/// Writes every event it handles into `handled` (in the runner's transaction) and refuses
/// the first event of [`POISONED`] while `broken` is set. Only that one: its later events would
/// go through if handed over, so their staying unhandled proves they wait behind it.
struct Poisonable {
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl Handler for Poisonable {
    fn name(&self) -> &str {
        NAME
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        aggregate_type == "stock_item"
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            let poisoned = event.aggregate_id == POISONED && event.sequence == 1;
            if poisoned && self.broken.load(Ordering::SeqCst) {
                return Err(HandlerError::Rejected(format!(
                    "event {} is poisoned",
                    event.position()
                )));
            }
            sqlx::query("INSERT INTO handled (aggregate_id, global_position) VALUES ($1, $2)")
                .bind(&event.aggregate_id)
                .bind(event.position())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// A migrated database, a bus, and the poisonable subscription running on it (broken).
struct Scene {
    database: TestDatabase,
    bus: CommandBus,
    broken: Arc<AtomicBool>,
    _runner: SubscriptionHandle,
}

impl Scene {
    async fn start() -> Self {
        let database = fresh_database(8).await;
        commands::MIGRATOR.run(&database.pool).await.unwrap();
        sqlx::query(
            "CREATE TABLE handled (id bigserial PRIMARY KEY, aggregate_id text NOT NULL, \
             global_position bigint NOT NULL)",
        )
        .execute(&database.pool)
        .await
        .unwrap();
        let bus = CommandBus::new(database.pool.clone());
        let broken = Arc::new(AtomicBool::new(true));
        let options = SubscriptionOptions {
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(20),
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        };
        let handler = Arc::new(Poisonable {
            broken: broken.clone(),
        });
        let runner = Subscription::new(
            handler,
            database.pool.clone(),
            bus.feed_signal().clone(),
            options,
        )
        .spawn();
        Self {
            database,
            bus,
            broken,
            _runner: runner,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.database.pool
    }

    async fn register(&self, sku: &str) {
        self.execute(sku, register_product_command(sku, 10, 0))
            .await;
    }

    async fn restock(&self, sku: &str, quantity: i64) {
        let quantity = Quantity::new(quantity).unwrap();
        self.execute(sku, StockItemCommand::Restock { quantity })
            .await;
    }

    async fn execute(&self, sku: &str, command: StockItemCommand) {
        self.bus
            .execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
            .await
            .unwrap();
    }

    /// Appends across three aggregates, the poisoned one among them, before and after its
    /// first event is parked; returns once the runner has passed all of it.
    async fn poison(&self) {
        self.register("OK-A").await;
        self.register(POISONED).await;
        self.register("OK-B").await;
        self.restock(POISONED, 1).await;
        eventually("the poisoned registration to be parked", || async {
            let letters = self.letters().await;
            letters.iter().any(|l| l.status == "parked").then_some(())
        })
        .await;
        self.restock(POISONED, 2).await;
        self.restock("OK-A", 3).await;
        self.restock("OK-B", 4).await;
        self.restock(POISONED, 5).await;
        wait_until_caught_up(self.pool(), NAME).await;
    }

    /// Every letter of the subscription, oldest first.
    async fn letters(&self) -> Vec<DeadLetter> {
        let mut letters = dead_letters::list(self.pool(), Some(NAME), false, 100)
            .await
            .unwrap();
        letters.reverse();
        letters
    }

    /// Positions of `sku`'s events, in feed order.
    async fn positions_of(&self, sku: &str) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT global_position FROM events WHERE aggregate_id = $1 \
             ORDER BY transaction_id, global_position",
        )
        .bind(sku)
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    /// Positions of `sku`'s events the handler applied, in the order it applied them.
    async fn handled(&self, sku: &str) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT global_position FROM handled WHERE aggregate_id = $1 ORDER BY id",
        )
        .bind(sku)
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    /// Waits until no letter of the subscription is open; returns them all.
    async fn wait_until_closed(&self) -> Vec<DeadLetter> {
        eventually("every dead letter to be closed", || async {
            let letters = self.letters().await;
            letters
                .iter()
                .all(|l| !dead_letters::OPEN.contains(&l.status.as_str()))
                .then_some(letters)
        })
        .await
    }
}

/// What `poison` leaves behind, checked once for both tests: returns the parked letter.
async fn assert_poisoned(scene: &Scene) -> DeadLetter {
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(poisoned.len(), 4);
    let letters = scene.letters().await;
    let summary: Vec<(&str, &str, i64, i32)> = letters
        .iter()
        .map(|l| {
            (
                l.aggregate_id.as_str(),
                l.status.as_str(),
                l.global_position,
                l.attempts,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (POISONED, "parked", poisoned[0], 3),
            (POISONED, "waiting", poisoned[1], 0),
            (POISONED, "waiting", poisoned[2], 0),
            (POISONED, "waiting", poisoned[3], 0),
        ]
    );
    let parked = letters[0].clone();
    assert_eq!(parked.event_type, "StockItemRegistered");
    assert!(
        parked
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("poisoned"),
        "{parked:?}"
    );
    for sku in ["OK-A", "OK-B"] {
        assert_eq!(
            scene.handled(sku).await,
            scene.positions_of(sku).await,
            "{sku}"
        );
    }
    assert!(scene.handled(POISONED).await.is_empty());
    parked
}
