//! Every projection the service runs, and starting them.

use feed::FeedSignal;
use feed::{Subscription, SubscriptionHandle, SubscriptionOptions};
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::models::bookings::Bookings;
use crate::models::orders::Orders;
use crate::models::payments::Payments;
use crate::models::stock_items::StockLevels;
use crate::read_model::ReadModel;
use crate::read_model::{Model, Projection};
use crate::row_cache::{CacheWriter, JoinedRows, Kind, RowCache};
use std::num::NonZeroUsize;

static ORDERS: Model<Orders> = Model::new();
static BOOKINGS: Model<Bookings> = Model::new();
static STOCK_ITEMS: Model<StockLevels> = Model::new();
static PAYMENTS: Model<Payments> = Model::new();

/// All projections, in the order the CLI lists them.
pub fn all() -> [&'static dyn Projection; 4] {
    [&ORDERS, &BOOKINGS, &STOCK_ITEMS, &PAYMENTS]
}

/// The projection called `name`.
pub fn find(name: &str) -> Option<&'static dyn Projection> {
    all().into_iter().find(|p| p.name() == name)
}

/// The names of all projections.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// Starts one runner per projection (each waits in standby while another process runs it).
pub fn start(pool: &PgPool, signal: &FeedSignal, options: &SubscriptionOptions) -> Running {
    start_under(
        pool,
        signal,
        options,
        &ReadCaches::default(),
        &CancellationToken::new(),
        &TaskTracker::new(),
    )
}

/// Like [`start`], the runners stopping cleanly when `shutdown` is cancelled and tracked by
/// `group`; each projection with a cache in `caches` keeps it exact (it serves while its
/// runner here holds the lease, and forgets its rows when they are rewritten elsewhere).
pub fn start_under(
    pool: &PgPool,
    signal: &FeedSignal,
    options: &SubscriptionOptions,
    caches: &ReadCaches,
    shutdown: &CancellationToken,
    group: &TaskTracker,
) -> Running {
    let handles = all()
        .iter()
        .map(|p| {
            let writers = caches.writers(p.name());
            for writer in &writers {
                let writer = writer.clone();
                signal.on_rewrite(p.name(), Arc::new(move || writer.clear()));
            }
            Subscription::new(
                p.live_handler(writers),
                pool.clone(),
                signal.clone(),
                options.clone(),
            )
            .spawn_under(shutdown, group)
        })
        .collect();
    Running { handles }
}

/// The projections this process runs; dropping it stops them.
#[derive(Default)]
pub struct Running {
    handles: Vec<SubscriptionHandle>,
}

impl Running {
    /// The runner of `name`.
    pub fn get(&self, name: &str) -> Option<&SubscriptionHandle> {
        self.handles.iter().find(|h| h.name == name)
    }

    /// Every runner.
    pub fn handles(&self) -> &[SubscriptionHandle] {
        &self.handles
    }
}

/// The caches of the read models (none when caching is off: every read then asks
/// PostgreSQL).
///
/// - `stock_items`: its rows, written by its runner.
/// - `orders` and `bookings`: the joined view of a row and its payment, written by the main
///   model's runner (by key) and by the payments runner (by the payment the view links to).
#[derive(Debug, Clone, Default)]
pub struct ReadCaches {
    stock_items: Option<Arc<RowCache>>,
    orders: Option<Arc<RowCache<JoinedRows>>>,
    bookings: Option<Arc<RowCache<JoinedRows>>>,
}

impl ReadCaches {
    /// Caches of at most `rows` rows each; none at all when `rows` is 0.
    pub fn new(rows: usize) -> Self {
        let Some(capacity) = NonZeroUsize::new(rows) else {
            return Self::default();
        };
        let joined = || {
            Some(Arc::new(RowCache::with_writers(
                capacity,
                &[Kind::Direct, Kind::Linked],
            )))
        };
        Self {
            stock_items: Some(Arc::new(RowCache::new(capacity))),
            orders: joined(),
            bookings: joined(),
        }
    }

    /// The stock levels by SKU.
    pub fn stock_items(&self) -> Option<&RowCache> {
        self.stock_items.as_deref()
    }

    /// The orders with their payments, by order id.
    pub fn orders(&self) -> Option<&RowCache<JoinedRows>> {
        self.orders.as_deref()
    }

    /// The bookings with their payments, by booking id.
    pub fn bookings(&self) -> Option<&RowCache<JoinedRows>> {
        self.bookings.as_deref()
    }

    /// The caches the runner of projection `name` writes, each with its side.
    pub fn writers(&self, name: &str) -> Vec<CacheWriter> {
        let stock = |writer| {
            self.stock_items
                .clone()
                .map(|c| CacheWriter::new(c, writer))
        };
        let joined = |cache: &Option<Arc<RowCache<JoinedRows>>>, writer| {
            cache.clone().map(|c| CacheWriter::new(c, writer))
        };
        let writers = match name {
            StockLevels::NAME => vec![stock(0)],
            Orders::NAME => vec![joined(&self.orders, 0)],
            Bookings::NAME => vec![joined(&self.bookings, 0)],
            Payments::NAME => vec![joined(&self.orders, 1), joined(&self.bookings, 1)],
            _ => Vec::new(),
        };
        writers.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joined views compare the payments model's checkpoint with order and booking positions
    /// and back (see `joined`): each must be woken by the other's commits, not wait for a poll.
    #[test]
    fn joined_models_follow_each_other_and_the_stock_model_only_its_own() {
        let follows = |name: &str| {
            let handler = find(name).expect(name).handler("t");
            ["order", "booking", "payment", "stock_item"]
                .into_iter()
                .filter(|t| handler.follows(t))
                .collect::<Vec<_>>()
        };
        assert_eq!(follows("payments"), ["order", "booking", "payment"]);
        assert_eq!(follows("orders"), ["order", "payment"]);
        assert_eq!(follows("bookings"), ["booking", "payment"]);
        assert_eq!(follows("stock_items"), ["stock_item"]);
    }
}
