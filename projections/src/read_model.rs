//! The one way events become read-model rows.
//!
//! A read model is a fold of one aggregate type's events into one row per aggregate. The
//! [`Projector`] applies a whole batch with a constant number of statements whatever its
//! size — load the touched rows, fold in memory, delete and re-insert them — which is what
//! lets a rebuild run at the speed of reading the feed rather than one round trip per event.
//! Rows travel as JSON (`to_jsonb` / `jsonb_populate_recordset`), so a model only declares its
//! row type, whose field names are its table's columns.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::FeedEvent;
use commands::subscription::{Handler, HandlerError};
use cqrs_es::Aggregate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

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
    /// The aggregate whose events it folds.
    type Aggregate: Aggregate;
    /// One row; serde field names are the table's column names.
    type Row: Serialize + DeserializeOwned + Send + Sync;

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
}

/// Applies a [`ReadModel`] to one table.
pub struct Projector<M> {
    load: String,
    delete: String,
    insert: String,
    model: PhantomData<fn() -> M>,
}

impl<M: ReadModel> Projector<M> {
    /// A projector writing to `table` (which has `M::TABLE`'s columns).
    pub fn new(table: &str) -> Self {
        let key = M::KEY_TYPE;
        Self {
            load: format!(
                "SELECT id::text, to_jsonb(t)::text FROM {table} t \
                 WHERE id = ANY($1::text[]::{key}[])"
            ),
            delete: format!("DELETE FROM {table} WHERE id = ANY($1::text[]::{key}[])"),
            insert: format!(
                "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)"
            ),
            model: PhantomData,
        }
    }

    /// Folds `events` into the rows they touch and writes those rows back.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        let mut keys: Vec<String> = events.iter().map(|e| e.aggregate_id.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        let stored: Vec<(String, String)> = sqlx::query_as(&self.load)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await?;
        let mut rows: HashMap<String, Option<M::Row>> = HashMap::with_capacity(keys.len());
        for (id, json) in stored {
            let row = serde_json::from_str(&json).map_err(|e| {
                HandlerError::Rejected(format!("{} row {id} does not decode: {e}", M::NAME))
            })?;
            rows.insert(id, Some(row));
        }
        for event in events {
            let decoded: <M::Aggregate as Aggregate>::Event = serde_json::from_str(&event.payload)
                .map_err(|e| {
                    HandlerError::Rejected(format!(
                        "event {} ({}) does not decode: {e}",
                        event.position(),
                        event.event_type
                    ))
                })?;
            let applied = Applied {
                position: event.position(),
                recorded_at: event.recorded_at,
            };
            let row = rows.remove(&event.aggregate_id).flatten();
            let next = M::apply(row, &event.aggregate_id, decoded, applied).map_err(|e| {
                HandlerError::Rejected(format!(
                    "event {} ({}): {e}",
                    event.position(),
                    event.event_type
                ))
            })?;
            rows.insert(event.aggregate_id.clone(), next);
        }
        let live: Vec<&M::Row> = rows.values().flatten().collect();
        sqlx::query(&self.delete)
            .bind(&keys)
            .execute(&mut *conn)
            .await?;
        if !live.is_empty() {
            let json = serde_json::to_string(&live).map_err(|e| {
                HandlerError::Rejected(format!("{} rows do not encode: {e}", M::NAME))
            })?;
            sqlx::query(&self.insert)
                .bind(json)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<M: ReadModel> Handler for Projector<M> {
    fn name(&self) -> &str {
        M::NAME
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        aggregate_type == <M::Aggregate as Aggregate>::TYPE
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        if events.is_empty() {
            return Ok(());
        }
        self.apply(conn, events).await
    }
}
