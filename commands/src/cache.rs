//! Recently used aggregates, so a command on a warm aggregate skips replaying its events.

use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// An aggregate's state as of `sequence`, and the global position of that event.
#[derive(Clone)]
pub struct Cached<A> {
    /// The state.
    pub aggregate: A,
    /// Its last event's sequence.
    pub sequence: usize,
    /// Its last event's global position.
    pub position: Option<i64>,
}

/// A bounded map from aggregate id to its last known state.
///
/// Safe to trust without re-reading because an append is only accepted at `sequence + 1`: if
/// another process wrote in between, the append conflicts, the entry is dropped and the
/// aggregate is reloaded (Axon's caching repository, EventStoreDB's expected version).
pub struct AggregateCache<A> {
    entries: Mutex<LruCache<String, Cached<A>>>,
}

impl<A: Clone> AggregateCache<A> {
    /// A cache holding at most `capacity` aggregates.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// A copy of the cached state, if any.
    pub fn get(&self, aggregate_id: &str) -> Option<Cached<A>> {
        self.entries.lock().ok()?.get(aggregate_id).cloned()
    }

    /// Records the state after a successful append.
    pub fn put(&self, aggregate_id: &str, cached: Cached<A>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.put(aggregate_id.to_owned(), cached);
        }
    }

    /// Forgets an aggregate whose stored state may differ from the cached one.
    pub fn invalidate(&self, aggregate_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.pop(aggregate_id);
        }
    }
}
