//! Two processes running the same subscription on one database never both apply an event, and
//! when the one holding the subscription dies the other takes over without a gap.

use async_trait::async_trait;
use commands::{CommandBus, CommandMetadata};
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand};
use feed::{FeedEvent, FeedSignal, Handler, HandlerError, Subscription, SubscriptionOptions};
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;
use tests::{eventually, fresh_database, register_product_command, wait_until_caught_up};

const NAME: &str = "failover_test";

/// Records which runner applied each event, in the runner's transaction.
struct Tagged {
    tag: &'static str,
}

#[async_trait]
impl Handler for Tagged {
    fn name(&self) -> &str {
        NAME
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
            sqlx::query("INSERT INTO applied (runner, global_position) VALUES ($1, $2)")
                .bind(self.tag)
                .bind(event.position())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

// Long on purpose: one takeover followed from both runners' side, in order.
#[tokio::test]
async fn a_standby_runner_takes_over_without_doubling_or_losing_an_event() {
    // Arrange: one database, two "processes" (each its own wake-up signal) running the same
    // subscription; a duplicate delivery would show as a second row for a position.
    let database = fresh_database(16).await;
    let pool = database.pool.clone();
    commands::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query(
        "CREATE TABLE applied (id bigserial PRIMARY KEY, runner text NOT NULL, \
         global_position bigint NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let options = SubscriptionOptions {
        poll_interval: Duration::from_millis(50),
        standby_interval: Duration::from_millis(50),
        batch_size: 20,
        ..Default::default()
    };
    let bus = CommandBus::new(pool.clone());
    let start = |tag, signal: FeedSignal| {
        Subscription::new(
            Arc::new(Tagged { tag }),
            pool.clone(),
            signal,
            options.clone(),
        )
        .spawn()
    };
    let first = start("first", bus.feed_signal().clone());
    let second = start("second", FeedSignal::default());
    let skus: Vec<String> = (0..8).map(|i| format!("FAIL-{i}")).collect();
    for sku in &skus {
        let command = register_product_command(sku, 1, 0);
        bus.execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
            .await
            .unwrap();
    }

    // Act: writers append while the runners work; midway the active runner dies.
    let writers: Vec<_> = skus
        .iter()
        .cloned()
        .map(|sku| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let command = StockItemCommand::Restock {
                        quantity: Quantity::new(1).unwrap(),
                    };
                    bus.execute::<StockItem>(&sku, command, &CommandMetadata::system("test"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let active: String = eventually("a runner to apply 100 events", || async {
        let (count, last): (i64, Option<String>) = sqlx::query_as(
            "SELECT count(*), (SELECT runner FROM applied ORDER BY id DESC LIMIT 1) FROM applied",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (count >= 100).then_some(last).flatten()
    })
    .await;
    let survivor = if active == "first" {
        first.abort();
        "second"
    } else {
        second.abort();
        "first"
    };
    for writer in writers {
        writer.await.unwrap();
    }
    // Events that only the survivor can apply, however far the dead runner had come.
    for sku in &skus {
        let command = StockItemCommand::Restock {
            quantity: Quantity::new(1).unwrap(),
        };
        bus.execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
            .await
            .unwrap();
    }
    wait_until_caught_up(&pool, NAME).await;

    // Assert: every event applied exactly once, in feed order, and the survivor finished.
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY events.transaction_id, events.global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let applied: Vec<(String, i64)> =
        sqlx::query_as("SELECT runner, global_position FROM applied ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 8 + 8 * 40 + 8);
    assert_eq!(
        applied.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        stored,
        "each event once, in feed order"
    );
    let runners: Vec<&str> = applied.iter().map(|(r, _)| r.as_str()).collect();
    let takeover = runners
        .iter()
        .position(|r| *r == survivor)
        .expect("the standby applied events after the takeover");
    assert!(
        runners[..takeover].iter().all(|r| *r == active),
        "only one runner at a time: {runners:?}"
    );
    assert!(
        runners[takeover..].iter().all(|r| *r == survivor),
        "the dead runner applied nothing after the takeover: {runners:?}"
    );
    assert_eq!(runners.last(), Some(&survivor));
}
