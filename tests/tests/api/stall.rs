//! A poisoned event costs its subscription one batch, never seconds: the rest of its batch
//! commits in the same pass, later batches flow while it is retried with back-off, and its
//! aggregate's later events still wait behind it.

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
use std::time::Duration;
use tests::{
    TestDatabase, eventually, fresh_database, register_product_command, wait_until_caught_up,
};

const NAME: &str = "stall_test";
const POISONED: &str = "POISON";

/// Records what it applies, with the start time of the transaction that applied it; refuses
/// every event of [`POISONED`] after its registration.
struct Recorder;

#[async_trait]
impl Handler for Recorder {
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
            if event.aggregate_id == POISONED && event.sequence == 2 {
                return Err(HandlerError::Rejected("poisoned".into()));
            }
            sqlx::query(
                "INSERT INTO applied (aggregate_id, global_position, at) VALUES ($1, $2, now())",
            )
            .bind(&event.aggregate_id)
            .bind(event.position())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

struct Scene {
    database: TestDatabase,
    bus: CommandBus,
    _runner: SubscriptionHandle,
}

impl Scene {
    /// A runner whose retries would wait an hour: a test that finishes proves nobody waits
    /// for them.
    async fn start() -> Self {
        let database = fresh_database(8).await;
        commands::MIGRATOR.run(&database.pool).await.unwrap();
        sqlx::query(
            "CREATE TABLE applied (id bigserial PRIMARY KEY, aggregate_id text NOT NULL, \
             global_position bigint NOT NULL, at timestamptz NOT NULL)",
        )
        .execute(&database.pool)
        .await
        .unwrap();
        let bus = CommandBus::new(database.pool.clone());
        let options = SubscriptionOptions {
            batch_size: 1_000,
            retry_base_delay: Duration::from_secs(3_600),
            retry_max_delay: Duration::from_secs(3_600),
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        };
        let runner = Subscription::new(
            Arc::new(Recorder),
            database.pool.clone(),
            bus.feed_signal().clone(),
            options,
        )
        .spawn();
        Self {
            database,
            bus,
            _runner: runner,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.database.pool
    }

    async fn execute(&self, sku: &str, command: StockItemCommand) {
        self.bus
            .execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
            .await
            .unwrap();
    }

    async fn restock(&self, sku: &str) {
        let quantity = Quantity::new(1).unwrap();
        self.execute(sku, StockItemCommand::Restock { quantity })
            .await;
    }

    async fn applied(&self, sku: &str) -> Vec<(i64, chrono::DateTime<chrono::Utc>)> {
        sqlx::query_as(
            "SELECT global_position, at FROM applied WHERE aggregate_id = $1 ORDER BY id",
        )
        .bind(sku)
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    async fn letters(&self) -> Vec<DeadLetter> {
        let mut letters = dead_letters::list(self.pool(), Some(NAME), false, 100)
            .await
            .unwrap();
        letters.reverse();
        letters
    }
}

// Long on purpose: two batches around one poisoned event, each asserted as it passes.
#[tokio::test]
async fn a_poisoned_event_holds_back_only_its_own_aggregate_and_costs_one_batch() {
    // Arrange: ten healthy items and the poisoned one, registered and caught up.
    let scene = Scene::start().await;
    let healthy: Vec<String> = (0..10).map(|i| format!("OK-{i:02}")).collect();
    for sku in healthy.iter().map(String::as_str).chain([POISONED]) {
        scene
            .execute(sku, register_product_command(sku, 5, 0))
            .await;
    }
    wait_until_caught_up(scene.pool(), NAME).await;

    // Act: one batch holding the poisoned restock among healthy ones. A transaction holding
    // an xid keeps the feed shut until everything is appended, so the runner reads it whole.
    let mut gate = scene.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *gate)
        .await
        .unwrap();
    for sku in &healthy[..5] {
        scene.restock(sku).await;
    }
    scene.restock(POISONED).await;
    for sku in &healthy[5..] {
        scene.restock(sku).await;
    }
    scene.restock(POISONED).await;
    gate.commit().await.unwrap();
    wait_until_caught_up(scene.pool(), NAME).await;

    // Assert: every healthy restock was applied with no retry waited for (the retry is an
    // hour away), those read with the poisoned one in the very transaction that set it aside.
    // (A transaction's start time, `now()`, tells its statements apart from others'.)
    let set_aside: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM dead_letters WHERE status = 'retrying'")
            .fetch_one(scene.pool())
            .await
            .unwrap();
    let mut with_it = 0;
    for sku in &healthy {
        let applied = scene.applied(sku).await;
        assert_eq!(applied.len(), 2, "{sku}: registration and restock");
        with_it += usize::from(applied[1].1 == set_aside);
    }
    assert!(
        with_it > 0,
        "the batch's healthy events commit with the set-aside"
    );
    let letters = scene.letters().await;
    let summary: Vec<(&str, &str, i32)> = letters
        .iter()
        .map(|l| (l.aggregate_id.as_str(), l.status.as_str(), l.attempts))
        .collect();
    assert_eq!(
        summary,
        [(POISONED, "retrying", 1), (POISONED, "waiting", 0)],
        "the poisoned restock is set aside with one try; the next one waits behind it"
    );
    assert!(letters[0].next_attempt_at.is_some());
    assert_eq!(
        scene.applied(POISONED).await.len(),
        1,
        "only its registration"
    );

    // Act: more traffic while the poisoned event waits for its retry an hour away.
    for sku in &healthy {
        scene.restock(sku).await;
    }
    scene.restock(POISONED).await;
    wait_until_caught_up(scene.pool(), NAME).await;

    // Assert: the healthy items flow; the poisoned item's new event queues behind.
    for sku in &healthy {
        assert_eq!(scene.applied(sku).await.len(), 3, "{sku}");
    }
    let statuses: Vec<String> = scene
        .letters()
        .await
        .into_iter()
        .map(|l| l.status)
        .collect();
    assert_eq!(statuses, ["retrying", "waiting", "waiting"]);
}

#[tokio::test]
async fn a_set_aside_event_is_retried_with_back_off_and_parked_once_out_of_tries() {
    // Arrange: quick retries.
    let database = fresh_database(8).await;
    commands::MIGRATOR.run(&database.pool).await.unwrap();
    sqlx::query(
        "CREATE TABLE applied (id bigserial PRIMARY KEY, aggregate_id text NOT NULL, \
         global_position bigint NOT NULL, at timestamptz NOT NULL)",
    )
    .execute(&database.pool)
    .await
    .unwrap();
    let bus = CommandBus::new(database.pool.clone());
    let options = SubscriptionOptions {
        max_attempts: 4,
        retry_base_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let _runner = Subscription::new(
        Arc::new(Recorder),
        database.pool.clone(),
        bus.feed_signal().clone(),
        options,
    )
    .spawn();
    let system = CommandMetadata::system("test");
    bus.execute::<StockItem>(POISONED, register_product_command(POISONED, 5, 0), &system)
        .await
        .unwrap();
    let quantity = Quantity::new(1).unwrap();

    // Act
    bus.execute::<StockItem>(POISONED, StockItemCommand::Restock { quantity }, &system)
        .await
        .unwrap();

    // Assert: parked after exactly the allowed tries, with the handler's error.
    let parked = eventually("the poisoned restock to be parked", || async {
        let letters = dead_letters::list(&database.pool, Some(NAME), false, 10)
            .await
            .unwrap();
        letters.into_iter().find(|l| l.status == "parked")
    })
    .await;
    assert_eq!(parked.attempts, 4);
    assert_eq!(parked.next_attempt_at, None);
    assert_eq!(parked.error.as_deref(), Some("poisoned"));
}
