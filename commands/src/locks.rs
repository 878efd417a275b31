//! In-process serialization of commands per aggregate.

use std::hash::{BuildHasher, RandomState};
use tokio::sync::{Mutex, MutexGuard};

/// A fixed set of mutexes, one chosen per aggregate by hash.
///
/// Optimistic concurrency alone makes N concurrent commands on one hot aggregate cost O(N²)
/// loads and failed appends. Queueing them in-process first leaves conflicts to the rare case of
/// two processes (or a hash collision's harmless wait), and the store's primary key still guards
/// correctness across processes.
pub struct AggregateLocks {
    stripes: Vec<Mutex<()>>,
    hasher: RandomState,
}

impl AggregateLocks {
    /// `stripes` mutexes; more stripes mean fewer unrelated aggregates waiting on each other.
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits for the aggregate's stripe.
    pub async fn lock(&self, aggregate_type: &str, aggregate_id: &str) -> MutexGuard<'_, ()> {
        let hash = self.hasher.hash_one((aggregate_type, aggregate_id));
        let index = (hash % self.stripes.len() as u64) as usize;
        self.stripes[index].lock().await
    }
}

impl Default for AggregateLocks {
    fn default() -> Self {
        Self::new(4096)
    }
}
