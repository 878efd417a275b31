//! The one way commands reach an aggregate.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::{Aggregate, AggregateError, DomainEvent as _, EventStore as _};
use domain::booking::Booking;
use domain::order::Order;
use domain::payment::Payment;
use domain::stock_item::StockItem;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{AggregateCache, Cached};
use crate::error::CommandError;
use crate::locks::AggregateLocks;
use crate::metadata::CommandMetadata;
use crate::repository::EventRepository;
use crate::snapshots::{self, LoadError, SnapshotPolicy};
use crate::store::{EventStore, event_store};
use feed::FeedSignal;
use feed::backoff::Backoff;

/// How a command that lost an optimistic-concurrency race is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// Back-off before the second attempt; doubles each time, with full jitter.
    pub base_delay: Duration,
    /// Upper bound of one back-off.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// Full jitter up to `base_delay · 2^attempt`: writers racing for one aggregate spread out.
    fn delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.base_delay, self.max_delay).full_jitter(attempt.saturating_add(1))
    }
}

/// What a command wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Events appended by this command (0 for an idempotent repeat).
    pub events: usize,
    /// The aggregate's sequence after the command.
    pub sequence: usize,
    /// Global position of the aggregate's latest event: a reader that has seen this position
    /// has seen the command's effects. `None` only if the aggregate has no events at all.
    pub position: Option<i64>,
}

/// One aggregate type's store and cache (internal to the bus).
pub struct Lane<A: Aggregate> {
    store: EventStore<A>,
    cache: AggregateCache<A>,
}

impl<A: Aggregate + Clone> Lane<A> {
    fn new(pool: &PgPool) -> Arc<Self> {
        Arc::new(Self {
            store: event_store(pool),
            cache: AggregateCache::new(CACHED_AGGREGATES),
        })
    }
}

/// Aggregates kept warm per type (a few KiB each at most).
const CACHED_AGGREGATES: usize = 50_000;

/// Aggregates the bus can address.
pub trait Routed: Aggregate<Services = ()> + Clone + 'static
where
    Self::Command: Clone + Send,
{
    /// This aggregate's lane inside the bus.
    fn lane(bus: &CommandBus) -> &Lane<Self>;

    /// The command's variant name, the `command` label of `reserva_commands_total`.
    fn command_name(command: &Self::Command) -> &'static str;
}

macro_rules! routed {
    ($aggregate:ty, $field:ident) => {
        impl Routed for $aggregate {
            fn lane(bus: &CommandBus) -> &Lane<Self> {
                &bus.$field
            }

            fn command_name(command: &Self::Command) -> &'static str {
                command.name()
            }
        }
    };
}
routed!(StockItem, stock_items);
routed!(Order, orders);
routed!(Booking, bookings);
routed!(Payment, payments);

/// Executes commands against the PostgreSQL event store.
///
/// Cheap to clone; every clone shares the pool and the per-aggregate locks.
#[derive(Clone)]
pub struct CommandBus {
    pool: PgPool,
    stock_items: Arc<Lane<StockItem>>,
    orders: Arc<Lane<Order>>,
    bookings: Arc<Lane<Booking>>,
    payments: Arc<Lane<Payment>>,
    locks: Arc<AggregateLocks>,
    retry: RetryPolicy,
    snapshots: SnapshotPolicy,
    feed: FeedSignal,
}

/// The stock item event that marks crossing into low stock (`reserva_low_stock_alerts_total`).
const LOW_STOCK_REACHED: &str = "LowStockReached";

const POSITION_OF_SEQUENCE: &str = "SELECT global_position FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";

impl CommandBus {
    /// A bus over `pool` with the default retry policy.
    pub fn new(pool: PgPool) -> Self {
        Self::with_retry(pool, RetryPolicy::default())
    }

    /// A bus with an explicit retry policy.
    pub fn with_retry(pool: PgPool, retry: RetryPolicy) -> Self {
        Self {
            stock_items: Lane::new(&pool),
            orders: Lane::new(&pool),
            bookings: Lane::new(&pool),
            payments: Lane::new(&pool),
            locks: Arc::new(AggregateLocks::default()),
            pool,
            retry,
            snapshots: SnapshotPolicy::default(),
            feed: FeedSignal::default(),
        }
    }

    /// The same bus taking snapshots as `policy` says (every 500 events by default).
    #[must_use]
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = policy;
        self
    }

    /// Bumped after every append that committed, so subscriptions wake at once.
    pub fn feed_signal(&self) -> &FeedSignal {
        &self.feed
    }

    /// The pool the bus writes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Decides `command` on the aggregate `aggregate_id` and appends its events with `metadata`.
    ///
    /// A lost optimistic-concurrency race reloads the aggregate and decides again (bounded,
    /// with jittered back-off), so the caller sees the business rule's answer — e.g.
    /// insufficient stock — rather than a raw conflict. Idempotent commands that change nothing
    /// commit nothing and report the aggregate's current position.
    ///
    /// Counted in `reserva_commands_total{aggregate,command,outcome}` (`ok`, `rejected`,
    /// `conflict`, `error`) and `reserva_events_appended_total{aggregate}`.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] with the aggregate's refusal; [`CommandError::Conflict`] when
    /// retries ran out; [`CommandError::Unavailable`] / [`CommandError::Internal`] for the store.
    // At debug level: a span per command costs nothing unless asked for.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(aggregate = A::TYPE, id = %aggregate_id, command = A::command_name(&command))
    )]
    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Routed,
        A::Command: Clone + Send,
    {
        let name = A::command_name(&command);
        let result = self
            .decide_and_append::<A>(aggregate_id, command, metadata)
            .await;
        let outcome = match &result {
            Ok(committed) => {
                metrics::counter!("reserva_events_appended_total", "aggregate" => A::TYPE)
                    .increment(committed.events as u64);
                "ok"
            }
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::Unavailable(_) | CommandError::Internal(_)) => "error",
        };
        metrics::counter!(
            "reserva_commands_total",
            "aggregate" => A::TYPE,
            "command" => name,
            "outcome" => outcome,
        )
        .increment(1);
        result
    }

    // One loop on purpose: the cached aggregate, the decision, the append and the conflict
    // retry share one invariant (a cached state is only used with the sequence it was read
    // at), which splitting would scatter.
    async fn decide_and_append<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Committed, CommandError<A::Error>>
    where
        A: Routed,
        A::Command: Clone + Send,
    {
        let lane = A::lane(self);
        let _serialized = self.locks.lock(A::TYPE, aggregate_id).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut context, mut position) = match lane.cache.get(aggregate_id) {
                Some(cached) => (
                    EventStoreAggregateContext {
                        aggregate_id: aggregate_id.to_owned(),
                        aggregate: cached.aggregate,
                        current_sequence: cached.sequence,
                        current_snapshot: None,
                    },
                    cached.position,
                ),
                None => {
                    let loaded = self.load_fresh::<A>(aggregate_id).await?;
                    (
                        EventStoreAggregateContext {
                            aggregate_id: aggregate_id.to_owned(),
                            aggregate: loaded.aggregate,
                            current_sequence: loaded.sequence,
                            current_snapshot: None,
                        },
                        None,
                    )
                }
            };
            let sink = EventSink::default();
            context
                .aggregate
                .handle(command.clone(), &(), &sink)
                .await
                .map_err(CommandError::Rejected)?;
            let events = sink.collect().await;
            if events.is_empty() {
                if position.is_none() {
                    position = self
                        .position_of::<A>(aggregate_id, context.current_sequence)
                        .await?;
                }
                return Ok(Committed {
                    events: 0,
                    sequence: context.current_sequence,
                    position,
                });
            }
            let next = context.aggregate.clone();
            let count = events.len();
            let low_stock = events
                .iter()
                .filter(|e| e.event_type() == LOW_STOCK_REACHED)
                .count();
            let sequence = context.current_sequence + count;
            let commit = lane.store.commit(events, context, metadata.to_map());
            match EventRepository::capture_position(commit).await {
                (Ok(_), position) => {
                    self.feed.bump(A::TYPE);
                    if low_stock > 0 {
                        metrics::counter!("reserva_low_stock_alerts_total")
                            .increment(low_stock as u64);
                    }
                    if self.snapshots.due(sequence, count) {
                        self.snapshot(aggregate_id, sequence, &next).await;
                    }
                    lane.cache.put(
                        aggregate_id,
                        Cached {
                            aggregate: next,
                            sequence,
                            position,
                        },
                    );
                    return Ok(Committed {
                        events: count,
                        sequence,
                        position,
                    });
                }
                (Err(AggregateError::AggregateConflict), _)
                    if attempt < self.retry.max_attempts =>
                {
                    lane.cache.invalidate(aggregate_id);
                    metrics::counter!("reserva_command_retries_total", "aggregate" => A::TYPE)
                        .increment(1);
                    tracing::debug!(
                        aggregate = A::TYPE,
                        aggregate_id,
                        attempt,
                        "append conflict"
                    );
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                (Err(e), _) => {
                    lane.cache.invalidate(aggregate_id);
                    return Err(CommandError::from_aggregate(e, attempt));
                }
            }
        }
    }

    /// Loads an aggregate's current state (e.g. to read a price before placing an order).
    ///
    /// # Errors
    /// [`CommandError::Unavailable`] / [`CommandError::Internal`] for the store.
    #[tracing::instrument(level = "debug", skip_all, fields(aggregate = A::TYPE, id = %aggregate_id))]
    pub async fn load<A>(&self, aggregate_id: &str) -> Result<A, CommandError<A::Error>>
    where
        A: Routed,
        A::Command: Clone + Send,
    {
        self.load_fresh::<A>(aggregate_id)
            .await
            .map(|loaded| loaded.aggregate)
    }

    /// `A` `aggregate_id` from the store: its snapshot, if any, and the events after it.
    /// An aggregate's state straight from the store (its latest snapshot and the events after
    /// it, never the command cache), with the sequence of the last event folded in (0 for
    /// none) and that event's global position: where a live view of it starts.
    ///
    /// # Errors
    /// [`CommandError::Unavailable`] / [`CommandError::Internal`] for the store.
    pub async fn load_latest<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, usize, Option<i64>), CommandError<A::Error>> {
        let loaded = self.load_fresh::<A>(aggregate_id).await?;
        let position = self.position_of::<A>(aggregate_id, loaded.sequence).await?;
        Ok((loaded.aggregate, loaded.sequence, position))
    }

    async fn load_fresh<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<snapshots::Loaded<A>, CommandError<A::Error>> {
        snapshots::load::<A>(&self.pool, aggregate_id, self.snapshots.every > 0)
            .await
            .map_err(|e| match e {
                LoadError::Database(e) => CommandError::from_sqlx(e),
                other => CommandError::Internal(Box::new(other)),
            })
    }

    /// Stores `state` as `A`'s snapshot after `sequence`. Best effort: a snapshot only makes
    /// loads faster, so failing to write one fails nothing (it is logged and counted).
    async fn snapshot<A: Aggregate>(&self, aggregate_id: &str, sequence: usize, state: &A) {
        if let Err(error) = snapshots::save(&self.pool, aggregate_id, sequence, state).await {
            metrics::counter!("reserva_snapshot_failures_total", "aggregate" => A::TYPE)
                .increment(1);
            tracing::warn!(aggregate = A::TYPE, aggregate_id, %error, "snapshot not stored");
        }
    }

    async fn position_of<A: Aggregate>(
        &self,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<Option<i64>, CommandError<A::Error>> {
        if sequence == 0 {
            return Ok(None);
        }
        sqlx::query_scalar(POSITION_OF_SEQUENCE)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(sequence as i64)
            .fetch_optional(&self.pool)
            .await
            .map_err(CommandError::from_sqlx)
    }
}
