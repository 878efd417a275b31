//! A runner's side of a cache, whatever the cache's value type.

use std::sync::Arc;

use super::RowCache;

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
    /// Writer `writer`'s side of `cache` (see [`RowCache::with_writers`]).
    pub fn new<V: Clone + Send + 'static>(cache: Arc<RowCache<V>>, writer: usize) -> Self {
        Self { cache, writer }
    }

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
