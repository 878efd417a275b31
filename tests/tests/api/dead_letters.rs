//! A poisoned event is parked, its aggregate's later events wait behind it, everything else
//! flows; an operator's retry or skip releases the chain in order.

use async_trait::async_trait;
use commands::{CommandBus, CommandMetadata};
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand, StockItemEvent};
use feed::dead_letters::{self, Action, DeadLetter, Requested};
use feed::{
    FeedEvent, Handler, HandlerError, Subscription, SubscriptionHandle, SubscriptionOptions,
};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tests::{
    TestDatabase, eventually, fresh_database, register_product_command, spawn_app,
    wait_until_caught_up,
};

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

#[tokio::test]
async fn a_poisoned_event_is_parked_and_retried_in_order_with_the_events_behind_it() {
    // Arrange
    let scene = Scene::start().await;
    scene.poison().await;
    let parked = assert_poisoned(&scene).await;

    // Act: the cause is fixed, the operator asks for a retry.
    scene.broken.store(false, Ordering::SeqCst);
    let requested = dead_letters::request(scene.pool(), parked.id, Action::Retry)
        .await
        .unwrap();

    // Assert: the parked event, then those behind it, in order; all resolved.
    let Requested::Accepted(letter) = requested else {
        panic!("{requested:?}");
    };
    assert_eq!(letter.requested_action.as_deref(), Some("retry"));
    let letters = scene.wait_until_closed().await;
    assert!(
        letters.iter().all(|l| l.status == "resolved"),
        "{letters:?}"
    );
    assert_eq!(
        letters[0].attempts, 4,
        "three failed tries and the one that worked"
    );
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(scene.handled(POISONED).await, poisoned);

    // Assert: the aggregate flows again, and a closed letter cannot be asked for again.
    scene.restock(POISONED, 6).await;
    wait_until_caught_up(scene.pool(), NAME).await;
    assert_eq!(
        scene.handled(POISONED).await,
        scene.positions_of(POISONED).await
    );
    assert_eq!(scene.letters().await.len(), 4);
    let again = dead_letters::request(scene.pool(), parked.id, Action::Retry)
        .await
        .unwrap();
    assert!(
        matches!(&again, Requested::Closed(l) if l.status == "resolved"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_skipped_event_is_never_handled_and_the_events_behind_it_are_in_order() {
    // Arrange
    let scene = Scene::start().await;
    scene.poison().await;
    let parked = assert_poisoned(&scene).await;

    // Act: the poisoned event stays broken; the operator drops it.
    let requested = dead_letters::request(scene.pool(), parked.id, Action::Skip)
        .await
        .unwrap();

    // Assert
    assert!(
        matches!(&requested, Requested::Accepted(l) if l.requested_action.as_deref() == Some("skip")),
        "{requested:?}"
    );
    let letters = scene.wait_until_closed().await;
    let statuses: Vec<&str> = letters.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(statuses, ["skipped", "resolved", "resolved", "resolved"]);
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(scene.handled(POISONED).await, poisoned[1..]);
    let again = dead_letters::request(scene.pool(), parked.id, Action::Retry)
        .await
        .unwrap();
    assert!(
        matches!(&again, Requested::Closed(l) if l.status == "skipped"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_chain_left_headless_by_an_interrupted_drain_is_finished_without_a_new_request() {
    // Arrange: as if a skip had closed the head and the runner died before the rest.
    let scene = Scene::start().await;
    scene.poison().await;
    let parked = assert_poisoned(&scene).await;

    // Act
    sqlx::query("UPDATE dead_letters SET status = 'skipped' WHERE id = $1")
        .bind(parked.id)
        .execute(scene.pool())
        .await
        .unwrap();

    // Assert: the waiting events are handled in order and resolved, with nobody asking again.
    let letters = scene.wait_until_closed().await;
    let statuses: Vec<&str> = letters.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(statuses, ["skipped", "resolved", "resolved", "resolved"]);
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(scene.handled(POISONED).await, poisoned[1..]);
}

#[tokio::test]
async fn a_request_for_an_unknown_dead_letter_is_not_found() {
    let database = fresh_database(2).await;
    commands::MIGRATOR.run(&database.pool).await.unwrap();

    let retry = dead_letters::request(&database.pool, 999_999, Action::Retry)
        .await
        .unwrap();
    let skip = dead_letters::request(&database.pool, 999_999, Action::Skip)
        .await
        .unwrap();

    assert_eq!(retry, Requested::NotFound);
    assert_eq!(skip, Requested::NotFound);
}

async fn problem(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.json().await.unwrap())
}

#[tokio::test]
async fn the_admin_api_lists_dead_letters_and_refuses_unknown_or_malformed_ids() {
    let app = spawn_app().await;

    let list = app.get("/admin/dead-letters").await;
    let unknown = app
        .post("/admin/dead-letters/999999/retry", &Value::Null)
        .await;
    let malformed = app
        .post("/admin/dead-letters/abc/retry", &Value::Null)
        .await;

    assert_eq!(list.status(), 200);
    assert_eq!(list.json::<Value>().await.unwrap(), serde_json::json!([]));
    let (status, content_type, body) = problem(unknown).await;
    assert_eq!(status, 404);
    assert!(content_type.starts_with("application/problem+json"));
    assert_eq!(body["code"], "dead_letter_not_found", "{body}");
    let (status, content_type, _) = problem(malformed).await;
    assert_eq!(status, 400);
    assert!(content_type.starts_with("application/problem+json"));
}

#[tokio::test]
async fn an_event_the_stock_projection_cannot_apply_is_listed_and_can_be_skipped_over_http() {
    // Arrange: a restock of an item that was never registered (written around the bus).
    let app = spawn_app().await;
    let event = StockItemEvent::StockRestocked {
        quantity: 1,
        on_hand: 1,
    };
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata) \
         VALUES ('stock_item', 'GHOST', 1, 'StockRestocked', '1.0', $1::text::json, '{}')",
    )
    .bind(serde_json::to_string(&event).unwrap())
    .execute(&app.pool)
    .await
    .unwrap();

    // Act: the server's own projector parks it.
    let parked = eventually("the stock projection to park the ghost restock", || async {
        let letters: Value = app
            .get("/admin/dead-letters?subscription=stock_items")
            .await
            .json()
            .await
            .unwrap();
        letters
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["status"] == "parked")
            .cloned()
    })
    .await;
    let id = parked["id"].as_i64().unwrap();
    let position = parked["global_position"].as_i64().unwrap();
    let (status, _, body) = problem(app.get_at("/api/v1/stock-items/GHOST", position).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("projection_parked")),
        "a read that asks for a parked event is told so, not shown a row without it"
    );
    let skip = app
        .post(&format!("/admin/dead-letters/{id}/skip"), &Value::Null)
        .await;

    // Assert
    assert_eq!(parked["aggregate_id"], "GHOST");
    assert_eq!(parked["event_type"], "StockRestocked");
    assert_eq!(parked["attempts"], 5);
    assert_eq!(skip.status(), 202);
    assert_eq!(
        skip.json::<Value>().await.unwrap()["requested_action"],
        "skip"
    );
    eventually("the ghost restock to be skipped", || async {
        let letters: Value = app
            .get("/admin/dead-letters?all=true")
            .await
            .json()
            .await
            .unwrap();
        (letters[0]["status"] == "skipped").then_some(())
    })
    .await;
    let (status, _, body) = problem(
        app.post(&format!("/admin/dead-letters/{id}/retry"), &Value::Null)
            .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "dead_letter_closed", "{body}");
    let open: Value = app.get("/admin/dead-letters").await.json().await.unwrap();
    assert_eq!(open, serde_json::json!([]));
}
