//! Wake-ups by interest: a commit wakes the subscriptions that follow its aggregate type and
//! no other; a reader can nudge one that does not. The runners here poll once an hour, so only
//! a wake-up or a nudge can move them while the test runs.

use async_trait::async_trait;
use commands::{CommandBus, CommandMetadata};
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use domain::{Currency, Money, Sku};
use feed::{Checkpoint, FeedEvent, Handler, HandlerError, Subscription, SubscriptionOptions};
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tests::{eventually, fresh_database, stored_checkpoint};

/// Counts the events it is handed of the one type it wants.
struct Only {
    name: &'static str,
    wanted: &'static str,
    handled: AtomicUsize,
}

#[async_trait]
impl Handler for Only {
    fn name(&self) -> &str {
        self.name
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        aggregate_type == self.wanted
    }

    async fn handle(
        &self,
        _conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        self.handled.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

fn only(name: &'static str, wanted: &'static str) -> Arc<Only> {
    Arc::new(Only {
        name,
        wanted,
        handled: AtomicUsize::new(0),
    })
}

async fn wait_stored(pool: &PgPool, name: &str, at: Checkpoint) {
    eventually(&format!("{name} to store {at:?}"), || async {
        (stored_checkpoint(pool, name).await == at).then_some(())
    })
    .await;
}

/// Registers `sku` through the bus (which wakes the subscriptions that follow stock items)
/// and returns the event's place in the feed.
async fn register(bus: &CommandBus, pool: &PgPool, sku: &str) -> Checkpoint {
    let command = StockItemCommand::Register {
        sku: Sku::parse(sku).unwrap(),
        name: "Mug".to_owned(),
        kind: StockKind::Product,
        quantity: 5,
        low_stock_threshold: 1,
        unit_price: Money::new(1500, Currency::parse("MXN").unwrap()).unwrap(),
    };
    let committed = bus
        .execute::<StockItem>(sku, command, &CommandMetadata::system("test"))
        .await
        .unwrap();
    let position = committed.position.expect("the append's position");
    let mut conn = pool.acquire().await.unwrap();
    feed::checkpoint_of(&mut conn, position)
        .await
        .unwrap()
        .expect("the event is committed")
}

#[tokio::test]
async fn a_commit_wakes_only_the_subscriptions_that_follow_its_type_and_a_nudge_wakes_another() {
    // Arrange: two runners on the bus's signal that poll once an hour, one wanting stock
    // items, one wanting orders; both have passed a first stock event. The order runner starts
    // after that event is committed, so its first look reaches it and no wake-up or nudge is
    // left pending when the second event commits (a nudge that arrives while a runner is
    // already looking would make it look once more, maybe after the second commit).
    let database = fresh_database(8).await;
    let pool = &database.pool;
    commands::MIGRATOR.run(pool).await.unwrap();
    let bus = CommandBus::new(pool.clone());
    let signal = bus.feed_signal().clone();
    let options = SubscriptionOptions {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (stock, orders) = (
        only("wake_stock", "stock_item"),
        only("wake_orders", "order"),
    );
    let spawn = |handler: Arc<Only>| {
        Subscription::new(handler, pool.clone(), signal.clone(), options.clone()).spawn()
    };
    let _stock_runner = spawn(Arc::clone(&stock));
    let first = register(&bus, pool, "WAKE-1").await;
    wait_stored(pool, "wake_stock", first).await;
    let _order_runner = spawn(Arc::clone(&orders));
    wait_stored(pool, "wake_orders", first).await;

    // Act: a second stock event.
    let second = register(&bus, pool, "WAKE-2").await;

    // Assert: the stock runner handled it; the order runner was not woken at all.
    wait_stored(pool, "wake_stock", second).await;
    assert_eq!(stock.handled.load(Ordering::SeqCst), 2);
    assert_eq!(
        stored_checkpoint(pool, "wake_orders").await,
        first,
        "a commit of a type it does not follow woke the order runner"
    );

    // Act + Assert: a nudge moves it over the event, which it does not handle.
    signal.nudge("wake_orders");
    wait_stored(pool, "wake_orders", second).await;
    assert_eq!(orders.handled.load(Ordering::SeqCst), 0);
}
