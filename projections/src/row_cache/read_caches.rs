//! The caches of the read models, and which runner writes which.

use std::num::NonZeroUsize;
use std::sync::Arc;

use super::{Kind, RowCache};
use crate::models::bookings::Bookings;
use crate::models::orders::Orders;
use crate::models::payments::Payments;
use crate::models::stock_items::StockLevels;
use crate::read_model::ReadModel;

/// A joined view as read: the main row's JSON and its payment's (if any), a pair that existed
/// together at one point of the feed.
pub type JoinedRows = (String, Option<String>);

/// What a runner does to a cache it writes, whatever the cache's value type.
trait Writes: Send + Sync {
    fn writing(&self, writer: usize, names: &[&str]);
    fn invalidate(&self, writer: usize, names: &[&str]);
    fn set_serving(&self, writer: usize, serving: bool);
    fn clear(&self);
}

impl<V: Clone + Send> Writes for RowCache<V> {
    fn writing(&self, writer: usize, names: &[&str]) {
        RowCache::writing(self, writer, names);
    }

    fn invalidate(&self, writer: usize, names: &[&str]) {
        RowCache::invalidate(self, writer, names);
    }

    fn set_serving(&self, writer: usize, serving: bool) {
        RowCache::set_serving(self, writer, serving);
    }

    fn clear(&self) {
        RowCache::clear(self);
    }
}

/// One runner's side of one cache: it names what it writes by its aggregate ids.
#[derive(Clone)]
pub struct CacheWriter {
    cache: Arc<dyn Writes>,
    writer: usize,
}

impl std::fmt::Debug for CacheWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWriter")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl CacheWriter {
    /// A batch writing the rows of `ids` started.
    pub fn writing(&self, ids: &[&str]) {
        self.cache.writing(self.writer, ids);
    }

    /// The batch that wrote the rows of `ids` ended.
    pub fn committed(&self, ids: &[&str]) {
        self.cache.invalidate(self.writer, ids);
    }

    /// The runner took or lost its lease.
    pub fn reset(&self, running: bool) {
        self.cache.set_serving(self.writer, running);
    }

    /// The rows were rewritten behind the runner.
    pub fn clear(&self) {
        self.cache.clear();
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
        let side = |cache: &Option<Arc<dyn Writes>>, writer| {
            cache.clone().map(|cache| CacheWriter { cache, writer })
        };
        let stock = self.stock_items.clone().map(|c| c as Arc<dyn Writes>);
        let orders = self.orders.clone().map(|c| c as Arc<dyn Writes>);
        let bookings = self.bookings.clone().map(|c| c as Arc<dyn Writes>);
        let writers = match name {
            StockLevels::NAME => vec![side(&stock, 0)],
            Orders::NAME => vec![side(&orders, 0)],
            Bookings::NAME => vec![side(&bookings, 0)],
            Payments::NAME => vec![side(&orders, 1), side(&bookings, 1)],
            _ => Vec::new(),
        };
        writers.into_iter().flatten().collect()
    }
}
