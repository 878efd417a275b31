//! The live path of every read model: a batch loaded, folded and written back by key.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use feed::{FeedEvent, Handler, HandlerError};
use sqlx::PgConnection;
use std::collections::HashMap;
use std::marker::PhantomData;
use tokio::sync::OnceCell;

use crate::read_model::{Applied, ReadModel};
use crate::row_cache::CacheWriter;

/// Applies a [`ReadModel`] to one table.
pub struct Projector<M> {
    table: String,
    load: String,
    delete: String,
    insert: String,
    /// `INSERT … ON CONFLICT (id) DO UPDATE` naming every column, built from the table's
    /// catalogue on first use.
    upsert: OnceCell<String>,
    /// The caches this live table's rows (or views joining them) are kept in, dropped as
    /// they are written.
    caches: Vec<CacheWriter>,
    model: PhantomData<fn() -> M>,
}

impl<M: ReadModel> Projector<M> {
    /// The table it writes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// A projector writing to `table` (which has `M::TABLE`'s columns).
    pub fn new(table: &str) -> Self {
        let key = M::KEY_TYPE;
        Self {
            table: table.to_owned(),
            load: format!(
                "SELECT id::text, to_jsonb(t)::text FROM {table} t \
                 WHERE id = ANY($1::text[]::{key}[])"
            ),
            delete: format!("DELETE FROM {table} WHERE id = ANY($1::text[]::{key}[])"),
            insert: format!(
                "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)"
            ),
            upsert: OnceCell::new(),
            caches: Vec::new(),
            model: PhantomData,
        }
    }

    /// The same projector, dropping the rows it writes from `caches` (held while its batch
    /// is in flight, dropped again once it commits).
    #[must_use]
    pub fn with_caches(mut self, caches: Vec<CacheWriter>) -> Self {
        self.caches = caches;
        self
    }

    /// Folds `events` into the rows they touch and writes those rows back.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        let keys = distinct_keys(events, |_| true);
        let mut rows = self.load(conn, &keys).await?;
        fold::<M>(&mut rows, events)?;
        self.store(conn, &rows).await
    }

    /// The stored rows of `keys` (absent keys have no row).
    pub(crate) async fn load(
        &self,
        conn: &mut PgConnection,
        keys: &[String],
    ) -> Result<Rows<M>, HandlerError> {
        let stored: Vec<(String, String)> = sqlx::query_as(&self.load)
            .bind(keys)
            .fetch_all(&mut *conn)
            .await?;
        let mut rows = Rows::<M>::with_capacity(keys.len());
        for (id, json) in stored {
            let row = serde_json::from_str(&json).map_err(|e| {
                HandlerError::Rejected(format!("{} row {id} does not decode: {e}", M::NAME))
            })?;
            rows.insert(id, Some(row));
        }
        Ok(rows)
    }

    /// Writes every row of `rows` by key: live rows are upserted, ended ones (`None`) deleted.
    /// Both statements find their rows through the primary key whatever the table's
    /// statistics, so a young or never-analyzed table is not scanned per batch.
    pub(crate) async fn store(
        &self,
        conn: &mut PgConnection,
        rows: &Rows<M>,
    ) -> Result<(), HandlerError> {
        let ended: Vec<&String> = rows
            .iter()
            .filter_map(|(key, row)| row.is_none().then_some(key))
            .collect();
        if !ended.is_empty() {
            sqlx::query(&self.delete)
                .bind(ended)
                .execute(&mut *conn)
                .await?;
        }
        let live: Vec<&M::Row> = rows.values().flatten().collect();
        if live.is_empty() {
            return Ok(());
        }
        let upsert = self.upsert_sql(conn).await?;
        for chunk in live.chunks(INSERT_CHUNK) {
            sqlx::query(upsert)
                .bind(encode::<M>(chunk)?)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Replaces the rows of every key in `rows` by deleting and inserting them: only for a
    /// rebuild's shadow table, which has no key index while it is bulk-loaded and which no
    /// reader sees until the swap.
    pub(crate) async fn replace(
        &self,
        conn: &mut PgConnection,
        rows: &Rows<M>,
    ) -> Result<(), HandlerError> {
        let keys: Vec<&String> = rows.keys().collect();
        sqlx::query(&self.delete)
            .bind(keys)
            .execute(&mut *conn)
            .await?;
        let live: Vec<&M::Row> = rows.values().flatten().collect();
        for chunk in live.chunks(INSERT_CHUNK) {
            sqlx::query(&self.insert)
                .bind(encode::<M>(chunk)?)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    async fn upsert_sql(&self, conn: &mut PgConnection) -> Result<&str, HandlerError> {
        let table = &self.table;
        self.upsert
            .get_or_try_init(|| async {
                let columns = table_columns(conn, table).await?;
                let set: Vec<&String> = columns.iter().filter(|c| *c != "id").collect();
                let names = set.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
                let excluded = set
                    .iter()
                    .map(|c| format!("EXCLUDED.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Ok::<_, HandlerError>(format!(
                    "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb) \
                     ON CONFLICT (id) DO UPDATE SET ({names}) = ROW({excluded})"
                ))
            })
            .await
            .map(String::as_str)
    }
}

/// Rows as the JSON array `jsonb_populate_recordset` reads.
fn encode<M: ReadModel>(rows: &[&M::Row]) -> Result<String, HandlerError> {
    serde_json::to_string(rows)
        .map_err(|e| HandlerError::Rejected(format!("{} rows do not encode: {e}", M::NAME)))
}

/// The column names of `table`, in order.
pub(crate) async fn table_columns(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute \
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
}

/// Rows per `INSERT` statement.
const INSERT_CHUNK: usize = 10_000;

/// Rows by aggregate id, `None` once deleted.
pub(crate) type Rows<M> = HashMap<String, Option<<M as ReadModel>::Row>>;

pub(crate) fn distinct_keys(events: &[FeedEvent], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut keys: Vec<String> = events
        .iter()
        .map(|e| e.aggregate_id.as_str())
        .filter(|id| keep(id))
        .map(str::to_owned)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Applies `events` to `rows` in order; a key missing from `rows` has no row yet.
pub(crate) fn fold<M: ReadModel>(
    rows: &mut Rows<M>,
    events: &[FeedEvent],
) -> Result<(), HandlerError> {
    for event in events {
        let decoded: <M::Aggregate as Aggregate>::Event = domain::upcast::decode(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            &event.payload,
        )
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
    Ok(())
}

#[async_trait]
impl<M: ReadModel> Handler for Projector<M> {
    fn name(&self) -> &str {
        M::NAME
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        aggregate_type == <M::Aggregate as Aggregate>::TYPE
    }

    fn follows(&self, aggregate_type: &str) -> bool {
        self.wants(aggregate_type) || M::FOLLOWS.contains(&aggregate_type)
    }

    fn committed(&self, aggregate_ids: &[&str]) {
        for cache in &self.caches {
            cache.committed(aggregate_ids);
        }
    }

    fn reset(&self, running: bool) {
        for cache in &self.caches {
            cache.reset(running);
        }
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        if events.is_empty() {
            return Ok(());
        }
        if !self.caches.is_empty() {
            let ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
            for cache in &self.caches {
                cache.writing(&ids);
            }
        }
        self.apply(conn, events).await
    }
}
