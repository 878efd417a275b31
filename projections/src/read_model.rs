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
use cqrs_es::Aggregate;
use feed::FeedEvent;
use feed::{Handler, HandlerError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::sync::OnceCell;

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
    /// An in-memory fold writing to a rebuild's empty shadow `table`.
    fn bulk(&self, table: &str) -> Box<dyn Bulk>;
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

    fn bulk(&self, table: &str) -> Box<dyn Bulk> {
        Box::new(BulkProjector::<M> {
            projector: Projector::new(table),
            rows: HashMap::new(),
            spilled: false,
        })
    }
}

/// Applies a [`ReadModel`] to one table.
pub struct Projector<M> {
    table: String,
    load: String,
    delete: String,
    insert: String,
    /// `INSERT … ON CONFLICT (id) DO UPDATE` naming every column, built from the table's
    /// catalogue on first use.
    upsert: OnceCell<String>,
    model: PhantomData<fn() -> M>,
}

impl<M: ReadModel> Projector<M> {
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
            model: PhantomData,
        }
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
    async fn load(
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
    async fn replace(&self, conn: &mut PgConnection, rows: &Rows<M>) -> Result<(), HandlerError> {
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
type Rows<M> = HashMap<String, Option<<M as ReadModel>::Row>>;

fn distinct_keys(events: &[FeedEvent], keep: impl Fn(&str) -> bool) -> Vec<String> {
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
fn fold<M: ReadModel>(rows: &mut Rows<M>, events: &[FeedEvent]) -> Result<(), HandlerError> {
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
    Ok(())
}

/// A rebuild's bulk phase: rows are folded in memory and written once each, instead of being
/// loaded and rewritten batch after batch. Only a rebuild may use it: nothing else writes the
/// shadow table, and no checkpoint is stored until the swap, which comes after [`Bulk::flush`].
#[async_trait]
pub trait Bulk: Send {
    /// Folds `events` (all of the model's aggregate type, in feed order).
    ///
    /// # Errors
    /// [`HandlerError`].
    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError>;

    /// Writes every row held in memory.
    ///
    /// # Errors
    /// [`HandlerError`].
    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), HandlerError>;
}

/// Writes new rows into `table` with `COPY … FROM STDIN` (text format): the row's JSON fields
/// are matched to the table's columns by name, nested values become JSON text for `jsonb`.
async fn copy_rows<'r, M: ReadModel>(
    conn: &mut PgConnection,
    table: &str,
    rows: impl Iterator<Item = &'r M::Row>,
) -> Result<(), HandlerError> {
    let columns = table_columns(conn, table).await?;
    let encode = |e: serde_json::Error| {
        HandlerError::Rejected(format!("{} rows do not encode: {e}", M::NAME))
    };
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({}) FROM STDIN", columns.join(", ")))
        .await?;
    let mut buffer = String::with_capacity(1 << 20);
    for row in rows {
        let serde_json::Value::Object(fields) = serde_json::to_value(row).map_err(encode)? else {
            return Err(HandlerError::Rejected(format!(
                "{} row is not an object",
                M::NAME
            )));
        };
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                buffer.push('\t');
            }
            match fields.get(column) {
                None | Some(serde_json::Value::Null) => buffer.push_str("\\N"),
                Some(serde_json::Value::String(text)) => copy_escape(&mut buffer, text),
                Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    buffer.push_str(&value.to_string());
                }
                Some(nested) => copy_escape(&mut buffer, &nested.to_string()),
            }
        }
        buffer.push('\n');
        if buffer.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.into_bytes()).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
fn copy_escape(buffer: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buffer.push_str("\\\\"),
            '\t' => buffer.push_str("\\t"),
            '\n' => buffer.push_str("\\n"),
            '\r' => buffer.push_str("\\r"),
            c => buffer.push(c),
        }
    }
}

/// Rows held in memory before a bulk fold spills to the table (then reloads on demand).
const BULK_ROWS: usize = 250_000;

/// [`Bulk`] for a [`ReadModel`].
pub struct BulkProjector<M: ReadModel> {
    projector: Projector<M>,
    rows: Rows<M>,
    /// Whether rows were written before: then keys missing in memory may be in the table.
    spilled: bool,
}

#[async_trait]
impl<M: ReadModel> Bulk for BulkProjector<M> {
    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        if self.spilled {
            let missing = distinct_keys(events, |id| !self.rows.contains_key(id));
            if !missing.is_empty() {
                let loaded = self.projector.load(conn, &missing).await?;
                self.rows.extend(loaded);
            }
        }
        fold::<M>(&mut self.rows, events)?;
        if self.rows.len() >= BULK_ROWS {
            self.flush(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), HandlerError> {
        if self.spilled {
            self.projector.replace(conn, &self.rows).await?;
        } else {
            // Every row is new: COPY them in, several times faster than any INSERT.
            copy_rows::<M>(conn, &self.projector.table, self.rows.values().flatten()).await?;
        }
        self.rows.clear();
        self.spilled = true;
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
