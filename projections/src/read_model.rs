//! The one way events become read-model rows.
//!
//! A read model is a fold of one aggregate type's events into one row per aggregate. The
//! [`Projector`] applies a whole batch with a constant number of statements whatever its
//! size — load the touched rows, fold in memory, write them back by key (an upsert, and a
//! delete only for rows that end) — which is what lets a rebuild run at the speed of reading
//! the feed rather than one round trip per event. No row is ever deleted to be written again:
//! a write that does not happen leaves the row as it was, never missing. Rows travel as JSON
//! (`to_jsonb` / `jsonb_populate_recordset`), so a model only declares its row type, whose
//! field names are its table's columns.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use feed::Handler;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::bulk::{Bulk, BulkProjector};
use crate::projector::Projector;
use crate::row_cache::CacheWriter;
use crate::verify::{Fold, MemoryFold};

/// Where and when the event being applied was recorded.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// Its global position (rows keep the last one as `position`).
    pub position: i64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A read model: one aggregate type folded into one table, one row per aggregate.
pub trait ReadModel: Send + Sync + 'static {
    /// Its name: the subscription's, the CLI's and the admin API's.
    const NAME: &'static str;
    /// Its live table; the key column is always `id`.
    const TABLE: &'static str;
    /// SQL type of `id`.
    const KEY_TYPE: &'static str;
    /// Other aggregate types whose appends wake its subscription at once, although it does
    /// not fold them: those of the models a joined view reads beside it, which must see this
    /// model's checkpoint pass their rows' positions without waiting for its next poll.
    const FOLLOWS: &'static [&'static str] = &[];
    /// The aggregate whose events it folds.
    type Aggregate: Aggregate;
    /// One row; serde field names are the table's column names.
    type Row: Serialize + DeserializeOwned + Clone + Send + Sync;

    /// The row after `event` (`None` deletes it).
    ///
    /// # Errors
    /// A message when the event cannot apply to the row (e.g. no row yet for a later event).
    fn apply(
        row: Option<Self::Row>,
        id: &str,
        event: <Self::Aggregate as Aggregate>::Event,
        applied: Applied,
    ) -> Result<Option<Self::Row>, String>;
}

/// A read model as the rest of the crate handles it, whatever its row type.
pub trait Projection: Send + Sync + 'static {
    /// Subscription name.
    fn name(&self) -> &'static str;
    /// Live table.
    fn table(&self) -> &'static str;
    /// The aggregate type whose events it reads.
    fn aggregate_type(&self) -> &'static str;
    /// A handler writing to `table` (the live table, or a rebuild's shadow).
    fn handler(&self, table: &str) -> Arc<dyn Handler>;
    /// The handler of the live table, dropping what it writes from `caches`.
    fn live_handler(&self, caches: Vec<CacheWriter>) -> Arc<dyn Handler>;
    /// An in-memory fold writing to a rebuild's empty shadow `table`.
    fn bulk(&self, table: &str) -> Box<dyn Bulk>;
    /// An in-memory fold to compare with (and repair) the live table.
    fn fold(&self) -> Box<dyn Fold>;
}

/// The [`Projection`] of a [`ReadModel`].
pub struct Model<M>(PhantomData<fn() -> M>);

impl<M> Model<M> {
    /// The projection of `M`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M> Default for Model<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: ReadModel> Projection for Model<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn table(&self) -> &'static str {
        M::TABLE
    }

    fn aggregate_type(&self) -> &'static str {
        <M::Aggregate as Aggregate>::TYPE
    }

    fn handler(&self, table: &str) -> Arc<dyn Handler> {
        Arc::new(Projector::<M>::new(table))
    }

    fn live_handler(&self, caches: Vec<CacheWriter>) -> Arc<dyn Handler> {
        Arc::new(Projector::<M>::new(M::TABLE).with_caches(caches))
    }

    fn bulk(&self, table: &str) -> Box<dyn Bulk> {
        Box::new(BulkProjector::<M>::new(table))
    }

    fn fold(&self) -> Box<dyn Fold> {
        Box::new(MemoryFold::<M>::new(M::TABLE))
    }
}
