//! A rebuild's bulk phase: every row folded in memory and written once.

use async_trait::async_trait;
use feed::{FeedEvent, HandlerError};
use sqlx::PgConnection;
use std::collections::HashMap;

use crate::projector::{Projector, Rows, distinct_keys, fold, table_columns};
use crate::read_model::ReadModel;

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

impl<M: ReadModel> BulkProjector<M> {
    /// An empty fold writing to the shadow `table`.
    pub fn new(table: &str) -> Self {
        Self {
            projector: Projector::new(table),
            rows: HashMap::new(),
            spilled: false,
        }
    }
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
            copy_rows::<M>(conn, self.projector.table(), self.rows.values().flatten()).await?;
        }
        self.rows.clear();
        self.spilled = true;
        Ok(())
    }
}
