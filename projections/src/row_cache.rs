//! Hot read-model rows kept in memory by the process that writes them (ADR 0008).
//!
//! A read of one row is one indexed statement; on a machine where the service and PostgreSQL
//! share the cores, not asking is the only way to answer much faster. The cache keeps rows
//! exact by three rules:
//!
//! - **It serves only where the rows are written.** It is on while this process's runner holds
//!   the projection's lease ([`feed::Handler::reset`]); a standby, an API-only instance or a
//!   runner that lost its connection serves from PostgreSQL.
//! - **The writer drops what it wrote, after commit, before it reports progress**
//!   ([`feed::Handler::committed`]). A read with `min_position` waits on that progress, so it
//!   never finds a copy older than the batch it waited for.
//! - **A fill cannot race a write.** A miss takes a ticket (the cache's epoch), reads the row,
//!   and keeps it only if no write or reset came in between ([`RowCache::fill`]): a row read
//!   before a batch committed and offered after the batch's invalidation is thrown away.
//! - **Reads never go back in time.** While a batch writing a row is in flight the row is
//!   neither served nor kept ([`RowCache::writing`]): between the batch's commit and its
//!   invalidation, a copy from before could otherwise follow a read of the new row.
//!
//! Writers behind the runner's back (a rebuild's swap, `verify --repair`, possibly in another
//! process) announce themselves through the relay ([`feed::relay::announce_rewrite`]), and
//! every process forgets the projection's rows; a lost `LISTEN` connection forgets everything.
//!
//! Rows are kept as the JSON text the query returns, so the cache knows no row type.

use lru::LruCache;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The state of a cache, changed only under its lock so that a fill's check and insert are
/// one step.
struct Inner {
    /// Whether this process's runner holds the lease (rows may be served).
    serving: bool,
    /// Bumped by every invalidation and reset; a fill must present the epoch it read before.
    epoch: u64,
    rows: LruCache<String, String>,
    /// Keys a batch in flight writes: read from PostgreSQL until it commits.
    writing: HashSet<String>,
}

/// One projection's rows by key, as JSON text.
pub struct RowCache {
    inner: Mutex<Inner>,
}

/// What a miss must show to keep the row it read: the epoch before it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("RowCache")
            .field("serving", &inner.serving)
            .field("rows", &inner.rows.len())
            .finish()
    }
}

impl RowCache {
    /// A cache of at most `capacity` rows (least recently read evicted), not serving until a
    /// runner takes the lease.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                serving: false,
                epoch: 0,
                rows: LruCache::new(capacity),
                writing: HashSet::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below leaves the state consistent, so a panic elsewhere poisons nothing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row of `key`, if kept and the cache serves.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut inner = self.lock();
        if !inner.serving || inner.writing.contains(key) {
            return None;
        }
        inner.rows.get(key).cloned()
    }

    /// The ticket a miss takes before it reads the row; `None` when the cache does not serve
    /// (the read then keeps nothing).
    pub fn ticket(&self) -> Option<Ticket> {
        let inner = self.lock();
        inner.serving.then_some(Ticket(inner.epoch))
    }

    /// Keeps `row` for `key` if nothing was written or reset since `ticket` was taken.
    /// Returns whether it was kept.
    pub fn fill(&self, ticket: Ticket, key: &str, row: &str) -> bool {
        let mut inner = self.lock();
        if !inner.serving || inner.epoch != ticket.0 || inner.writing.contains(key) {
            return false;
        }
        inner.rows.put(key.to_owned(), row.to_owned());
        true
    }

    /// A batch (uncommitted) is writing the rows of `keys`: drop them, and neither serve nor
    /// keep them until [`RowCache::invalidate`] says the batch ended.
    pub fn writing(&self, keys: &[&str]) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        for key in keys {
            inner.rows.pop(*key);
            inner.writing.insert((*key).to_owned());
        }
    }

    /// The batch in flight ended (committed, or rolled back and retried) having written the
    /// rows of `keys`: drop them, void every outstanding ticket, and serve again what the
    /// batch had held back (the runner writes one batch at a time).
    pub fn invalidate(&self, keys: &[&str]) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        for key in keys {
            inner.rows.pop(*key);
        }
        inner.writing.clear();
    }

    /// Forgets every row (rows were rewritten behind the runner); serving stays as it is.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.rows.clear();
    }

    /// The runner took (`true`) or lost the lease: forget every row, and serve only while it
    /// holds it.
    pub fn set_serving(&self, serving: bool) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.rows.clear();
        inner.writing.clear();
        inner.serving = serving;
    }

    /// Whether rows may be served (this process's runner holds the lease).
    pub fn serving(&self) -> bool {
        self.lock().serving
    }

    /// How many rows are kept.
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    /// Whether no row is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caches of the projections that have one, by projection name; empty when caching is
/// off (every read then asks PostgreSQL).
#[derive(Debug, Clone, Default)]
pub struct ReadCaches {
    caches: Arc<HashMap<&'static str, Arc<RowCache>>>,
}

impl ReadCaches {
    /// One cache of at most `rows` rows for each of `names`; none at all when `rows` is 0.
    pub fn new(names: impl IntoIterator<Item = &'static str>, rows: usize) -> Self {
        let Some(capacity) = NonZeroUsize::new(rows) else {
            return Self::default();
        };
        let caches = names
            .into_iter()
            .map(|name| (name, Arc::new(RowCache::new(capacity))))
            .collect();
        Self {
            caches: Arc::new(caches),
        }
    }

    /// The cache of projection `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<&Arc<RowCache>> {
        self.caches.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> RowCache {
        let cache = RowCache::new(NonZeroUsize::new(2).expect("two"));
        cache.set_serving(true);
        cache
    }

    #[test]
    fn nothing_is_served_or_kept_without_the_lease() {
        let cache = RowCache::new(NonZeroUsize::new(2).expect("two"));
        assert_eq!(cache.ticket(), None);
        cache.set_serving(true);
        let ticket = cache.ticket().expect("serving");
        assert!(cache.fill(ticket, "A", "1"));
        cache.set_serving(false);
        assert_eq!(cache.get("A"), None);
        assert!(!cache.fill(ticket, "A", "1"));
    }

    #[test]
    fn a_fill_that_read_before_a_write_committed_is_thrown_away() {
        let cache = cache();
        let before = cache.ticket().expect("serving");
        // The batch commits and invalidates while the miss was reading the old row.
        cache.invalidate(&["A"]);
        assert!(!cache.fill(before, "A", "old"));
        assert_eq!(cache.get("A"), None);
        let after = cache.ticket().expect("serving");
        assert!(cache.fill(after, "A", "new"));
        assert_eq!(cache.get("A").as_deref(), Some("new"));
    }

    #[test]
    fn a_row_being_written_is_neither_served_nor_kept_until_the_batch_ends() {
        let cache = cache();
        let ticket = cache.ticket().expect("serving");
        cache.fill(ticket, "A", "old");
        cache.writing(&["A"]);
        assert_eq!(cache.get("A"), None);
        // A miss while the batch is in flight reads the old row (or, after the commit, the
        // new one): neither may be kept before the batch ends.
        let during = cache.ticket().expect("serving");
        assert!(!cache.fill(during, "A", "old"));
        cache.invalidate(&["A"]);
        let after = cache.ticket().expect("serving");
        assert!(cache.fill(after, "A", "new"));
        assert_eq!(cache.get("A").as_deref(), Some("new"));
    }

    #[test]
    fn a_write_drops_the_kept_row_and_a_rewrite_drops_all() {
        let cache = cache();
        let ticket = cache.ticket().expect("serving");
        cache.fill(ticket, "A", "1");
        cache.fill(ticket, "B", "2");
        cache.invalidate(&["A"]);
        assert_eq!(cache.get("A"), None);
        assert_eq!(cache.get("B").as_deref(), Some("2"));
        cache.clear();
        assert!(cache.is_empty());
        assert!(cache.serving());
    }

    #[test]
    fn the_least_recently_read_row_is_evicted() {
        let cache = cache();
        let ticket = cache.ticket().expect("serving");
        cache.fill(ticket, "A", "1");
        cache.fill(ticket, "B", "2");
        cache.get("A");
        cache.fill(ticket, "C", "3");
        assert_eq!(cache.get("B"), None);
        assert_eq!(cache.get("A").as_deref(), Some("1"));
    }
}
