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
//! A joined view (an order with its payment) is kept the same way, written by two runners: the
//! main model's names the view's key, the payments model names the payment the view links to
//! ([`Kind::Linked`]). It serves only while both runners hold their leases here.
//!
//! The model caches and who writes them: [`crate::catalog::ReadCaches`].

mod writer;

pub use writer::CacheWriter;

/// A joined view as read: the main row's JSON and its payment's (if any), a pair that existed
/// together at one point of the feed.
pub type JoinedRows = (String, Option<String>);

use lru::LruCache;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How a writer names the rows it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// By the cache's key (the model's own rows).
    Direct,
    /// By the link a kept value names (a joined view's payment id).
    Linked,
}

/// A kept value, and the link it names (if any).
struct Entry<V> {
    value: V,
    link: Option<String>,
}

/// The state of a cache, changed only under its lock so that a fill's check and insert are
/// one step.
struct Inner<V> {
    /// Per writer: whether this process's runner holds its lease (rows may be served only
    /// while every writer's does).
    serving: Vec<bool>,
    /// Bumped by every invalidation and reset; a fill must present the epoch it read before.
    epoch: u64,
    rows: LruCache<String, Entry<V>>,
    /// Link → key of the kept value naming it.
    links: HashMap<String, String>,
    /// Per writer: the keys (or links) its batch in flight writes, read from PostgreSQL until
    /// it commits.
    writing: Vec<HashSet<String>>,
}

impl<V> Inner<V> {
    /// Whether every writer's runner holds its lease here.
    fn serves(&self) -> bool {
        self.serving.iter().all(|s| *s)
    }

    fn drop_key(&mut self, key: &str) {
        if let Some(entry) = self.rows.pop(key)
            && let Some(link) = entry.link
        {
            self.links.remove(&link);
        }
    }

    /// The keys `names` of writer `kind` stand for.
    fn keys(&self, kind: Kind, names: &[&str]) -> Vec<String> {
        match kind {
            Kind::Direct => names.iter().map(|n| (*n).to_owned()).collect(),
            Kind::Linked => names
                .iter()
                .filter_map(|n| self.links.get(*n).cloned())
                .collect(),
        }
    }

    /// Whether a batch in flight writes `key` or the row `link` names.
    fn held(&self, kinds: &[Kind], key: &str, link: Option<&str>) -> bool {
        kinds
            .iter()
            .zip(&self.writing)
            .any(|(kind, writing)| match kind {
                Kind::Direct => writing.contains(key),
                Kind::Linked => link.is_some_and(|l| writing.contains(l)),
            })
    }
}

/// One view's values by key (by default a model's row as JSON text).
pub struct RowCache<V = String> {
    kinds: Vec<Kind>,
    inner: Mutex<Inner<V>>,
}

/// What a miss must show to keep the row it read: the epoch before it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl<V> RowCache<V> {
    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // Every change below leaves the state consistent, so a panic elsewhere poisons nothing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> std::fmt::Debug for RowCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("RowCache")
            .field("serving", &inner.serving)
            .field("rows", &inner.rows.len())
            .finish()
    }
}

impl<V: Clone> RowCache<V> {
    /// A cache of at most `capacity` rows (least recently read evicted) written by one
    /// runner naming its keys, not serving until that runner takes the lease.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self::with_writers(capacity, &[Kind::Direct])
    }

    /// A cache written by one runner per entry of `kinds` (writer `i` is `kinds[i]`), serving
    /// only while all of them hold their leases here.
    pub fn with_writers(capacity: NonZeroUsize, kinds: &[Kind]) -> Self {
        Self {
            kinds: kinds.to_vec(),
            inner: Mutex::new(Inner {
                serving: vec![false; kinds.len()],
                epoch: 0,
                rows: LruCache::new(capacity),
                links: HashMap::new(),
                writing: vec![HashSet::new(); kinds.len()],
            }),
        }
    }

    /// The value of `key`, if kept and the cache serves.
    pub fn get(&self, key: &str) -> Option<V> {
        let mut inner = self.lock();
        if !inner.serves() {
            return None;
        }
        let link = inner.rows.get(key)?.link.clone();
        if inner.held(&self.kinds, key, link.as_deref()) {
            return None;
        }
        inner.rows.get(key).map(|e| e.value.clone())
    }

    /// The ticket a miss takes before it reads the row; `None` when the cache does not serve
    /// (the read then keeps nothing).
    pub fn ticket(&self) -> Option<Ticket> {
        let inner = self.lock();
        inner.serves().then_some(Ticket(inner.epoch))
    }

    /// Keeps `value` for `key` (naming `link`) if nothing was written or reset since `ticket`
    /// was taken. Returns whether it was kept.
    pub fn fill(&self, ticket: Ticket, key: &str, value: V, link: Option<&str>) -> bool {
        let mut inner = self.lock();
        if !inner.serves() || inner.epoch != ticket.0 || inner.held(&self.kinds, key, link) {
            return false;
        }
        inner.drop_key(key);
        let entry = Entry {
            value,
            link: link.map(str::to_owned),
        };
        if let Some((_, evicted)) = inner.rows.push(key.to_owned(), entry)
            && let Some(link) = evicted.link
        {
            inner.links.remove(&link);
        }
        if let Some(link) = link {
            inner.links.insert(link.to_owned(), key.to_owned());
        }
        true
    }

    /// Writer `writer`'s batch (uncommitted) is writing what `names` name: drop those rows,
    /// and neither serve nor keep them until [`RowCache::invalidate`] says the batch ended.
    pub fn writing(&self, writer: usize, names: &[&str]) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        for key in inner.keys(self.kinds[writer], names) {
            inner.drop_key(&key);
        }
        inner.writing[writer].extend(names.iter().map(|n| (*n).to_owned()));
    }

    /// Writer `writer`'s batch ended (committed, or rolled back and retried) having written
    /// what `names` name: drop those rows, void every outstanding ticket, and serve again
    /// what the batch had held back (a runner writes one batch at a time).
    pub fn invalidate(&self, writer: usize, names: &[&str]) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        for key in inner.keys(self.kinds[writer], names) {
            inner.drop_key(&key);
        }
        inner.writing[writer].clear();
    }

    /// Forgets every row (rows were rewritten behind the runners); serving stays as it is.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.rows.clear();
        inner.links.clear();
    }

    /// Writer `writer`'s runner took (`true`) or lost the lease: forget every row, and serve
    /// only while every writer's runner holds its lease.
    pub fn set_serving(&self, writer: usize, serving: bool) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.rows.clear();
        inner.links.clear();
        inner.writing[writer].clear();
        inner.serving[writer] = serving;
    }

    /// Whether rows may be served (every writer's runner holds its lease here).
    #[cfg(test)]
    fn serving(&self) -> bool {
        self.lock().serves()
    }

    /// Whether no row is kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> RowCache {
        let cache = RowCache::new(NonZeroUsize::new(2).expect("two"));
        cache.set_serving(0, true);
        cache
    }

    #[test]
    fn nothing_is_served_or_kept_without_the_lease() {
        let cache = RowCache::new(NonZeroUsize::new(2).expect("two"));
        assert_eq!(cache.ticket(), None);
        cache.set_serving(0, true);
        let ticket = cache.ticket().expect("serving");
        assert!(cache.fill(ticket, "A", "1".to_owned(), None));
        cache.set_serving(0, false);
        assert_eq!(cache.get("A"), None);
        assert!(!cache.fill(ticket, "A", "1".to_owned(), None));
    }

    #[test]
    fn a_fill_that_read_before_a_write_committed_is_thrown_away() {
        let cache = cache();
        let before = cache.ticket().expect("serving");
        // The batch commits and invalidates while the miss was reading the old row.
        cache.invalidate(0, &["A"]);
        assert!(!cache.fill(before, "A", "old".to_owned(), None));
        assert_eq!(cache.get("A"), None);
        let after = cache.ticket().expect("serving");
        assert!(cache.fill(after, "A", "new".to_owned(), None));
        assert_eq!(cache.get("A").as_deref(), Some("new"));
    }

    #[test]
    fn a_row_being_written_is_neither_served_nor_kept_until_the_batch_ends() {
        let cache = cache();
        let ticket = cache.ticket().expect("serving");
        cache.fill(ticket, "A", "old".to_owned(), None);
        cache.writing(0, &["A"]);
        assert_eq!(cache.get("A"), None);
        // A miss while the batch is in flight reads the old row (or, after the commit, the
        // new one): neither may be kept before the batch ends.
        let during = cache.ticket().expect("serving");
        assert!(!cache.fill(during, "A", "old".to_owned(), None));
        cache.invalidate(0, &["A"]);
        let after = cache.ticket().expect("serving");
        assert!(cache.fill(after, "A", "new".to_owned(), None));
        assert_eq!(cache.get("A").as_deref(), Some("new"));
    }

    #[test]
    fn a_write_drops_the_kept_row_and_a_rewrite_drops_all() {
        let cache = cache();
        let ticket = cache.ticket().expect("serving");
        cache.fill(ticket, "A", "1".to_owned(), None);
        cache.fill(ticket, "B", "2".to_owned(), None);
        cache.invalidate(0, &["A"]);
        assert_eq!(cache.get("A"), None);
        assert_eq!(cache.get("B").as_deref(), Some("2"));
        cache.clear();
        assert!(cache.is_empty());
        assert!(cache.serving());
    }

    #[test]
    fn a_joined_view_serves_only_with_both_writers_and_drops_on_either_write() {
        let cache: RowCache = RowCache::with_writers(
            NonZeroUsize::new(4).expect("four"),
            &[Kind::Direct, Kind::Linked],
        );
        cache.set_serving(0, true);
        assert_eq!(cache.ticket(), None, "the payments runner is not here");
        cache.set_serving(1, true);
        let ticket = cache.ticket().expect("serving");
        assert!(cache.fill(ticket, "order-1", "paid".to_owned(), Some("pay-1")));
        // The payments runner writes the payment the view links to: held, then dropped.
        cache.writing(1, &["pay-1"]);
        assert_eq!(cache.get("order-1"), None);
        let during = cache.ticket().expect("serving");
        assert!(!cache.fill(during, "order-1", "old".to_owned(), Some("pay-1")));
        cache.invalidate(1, &["pay-1"]);
        let after = cache.ticket().expect("serving");
        assert!(cache.fill(after, "order-1", "refunded".to_owned(), Some("pay-1")));
        assert_eq!(cache.get("order-1").as_deref(), Some("refunded"));
        // A payment nobody links to drops nothing.
        cache.invalidate(1, &["pay-2"]);
        assert_eq!(cache.get("order-1").as_deref(), Some("refunded"));
        // The orders runner writes the order: dropped.
        cache.invalidate(0, &["order-1"]);
        assert_eq!(cache.get("order-1"), None);
    }

    #[test]
    fn the_least_recently_read_row_is_evicted() {
        let cache = cache();
        let ticket = cache.ticket().expect("serving");
        cache.fill(ticket, "A", "1".to_owned(), None);
        cache.fill(ticket, "B", "2".to_owned(), None);
        cache.get("A");
        cache.fill(ticket, "C", "3".to_owned(), None);
        assert_eq!(cache.get("B"), None);
        assert_eq!(cache.get("A").as_deref(), Some("1"));
    }
}
