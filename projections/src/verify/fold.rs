//! A read model folded in memory and compared with its live table, row by row.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use feed::{FeedEvent, HandlerError};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

use crate::projector::{Projector, Rows, fold};
use crate::read_model::ReadModel;

/// How one row differs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The events make a row the table lacks.
    Missing {
        /// The row's id.
        id: String,
        /// The row the events make.
        expected: Value,
    },
    /// The table holds a row the events do not make.
    Extra {
        /// The row's id.
        id: String,
        /// The row in the table.
        found: Value,
    },
    /// Both have the row, with different values.
    Differs {
        /// The row's id.
        id: String,
        /// Every column that differs.
        columns: Vec<ColumnDifference>,
    },
}

impl Difference {
    /// The row's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Missing { id, .. } | Self::Extra { id, .. } | Self::Differs { id, .. } => id,
        }
    }
}

/// One column of a differing row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ColumnDifference {
    /// The column.
    pub column: String,
    /// Its value by the events.
    pub expected: Value,
    /// Its value in the table.
    pub found: Value,
}

/// A model folded in memory from the events, then compared with the table and, on request,
/// written over it where they differ.
#[async_trait]
pub trait Fold: Send {
    /// Folds `events` (of the model's aggregate type, in feed order).
    ///
    /// # Errors
    /// [`HandlerError::Rejected`] when an event does not apply.
    fn apply(&mut self, events: &[FeedEvent]) -> Result<(), HandlerError>;

    /// Compares the live row `id` (as `to_jsonb` shows it) with the fold.
    fn compare(&mut self, id: &str, json: &str) -> Option<Difference>;

    /// The rows the fold makes that [`Fold::compare`] never saw.
    fn missing(&self) -> Vec<Difference>;

    /// Writes the fold's state of the rows `ids` over the table (inside the caller's
    /// transaction): an upsert, or a delete where the fold has no row.
    ///
    /// # Errors
    /// [`HandlerError`].
    async fn repair(&self, conn: &mut PgConnection, ids: &[String]) -> Result<(), HandlerError>;

    /// Rows the fold holds.
    fn rows(&self) -> usize;
}

/// [`Fold`] of a [`ReadModel`].
pub struct MemoryFold<M: ReadModel> {
    rows: Rows<M>,
    seen: HashSet<String>,
    projector: Projector<M>,
}

impl<M: ReadModel> MemoryFold<M> {
    /// An empty fold of `M`, repairing `table`.
    pub fn new(table: &str) -> Self {
        Self {
            rows: HashMap::new(),
            seen: HashSet::new(),
            projector: Projector::new(table),
        }
    }
}

#[async_trait]
impl<M: ReadModel> Fold for MemoryFold<M>
where
    M::Row: Clone,
{
    fn apply(&mut self, events: &[FeedEvent]) -> Result<(), HandlerError> {
        fold::<M>(&mut self.rows, events)
    }

    fn compare(&mut self, id: &str, json: &str) -> Option<Difference> {
        self.seen.insert(id.to_owned());
        // Through the row type, so representations (time zones, key order) do not count.
        let found = serde_json::from_str::<M::Row>(json)
            .ok()
            .and_then(|row| serde_json::to_value(row).ok())
            .unwrap_or_else(|| serde_json::from_str(json).unwrap_or(Value::String(json.into())));
        let found = at_table_precision(found);
        let expected = self
            .rows
            .get(id)
            .and_then(Option::as_ref)
            .and_then(|row| serde_json::to_value(row).ok())
            .map(at_table_precision);
        let Some(expected) = expected else {
            return Some(Difference::Extra {
                id: id.to_owned(),
                found,
            });
        };
        let columns = differing_columns(&expected, &found);
        (!columns.is_empty()).then(|| Difference::Differs {
            id: id.to_owned(),
            columns,
        })
    }

    fn missing(&self) -> Vec<Difference> {
        let mut missing: Vec<Difference> = self
            .rows
            .iter()
            .filter(|(id, row)| row.is_some() && !self.seen.contains(*id))
            .map(|(id, row)| Difference::Missing {
                id: id.clone(),
                expected: serde_json::to_value(row).unwrap_or(Value::Null),
            })
            .collect();
        missing.sort_by(|a, b| a.id().cmp(b.id()));
        missing
    }

    async fn repair(&self, conn: &mut PgConnection, ids: &[String]) -> Result<(), HandlerError> {
        let rows: Rows<M> = ids
            .iter()
            .map(|id| (id.clone(), self.rows.get(id).cloned().flatten()))
            .collect();
        self.projector.store(conn, &rows).await
    }

    fn rows(&self) -> usize {
        self.rows.values().filter(|row| row.is_some()).count()
    }
}

/// `value` as the table can hold it: timestamps (events carry nanoseconds) rounded to
/// PostgreSQL's microseconds the way its input does (`rint(fraction * 1e6)`), so a value the
/// table stored faithfully is not a difference.
fn at_table_precision(value: Value) -> Value {
    match value {
        Value::String(text) => match DateTime::parse_from_rfc3339(&text) {
            Ok(at) => {
                let at = at.with_timezone(&Utc);
                let fraction = f64::from(at.timestamp_subsec_nanos()) / 1e9;
                let micros = (fraction * 1e6).round_ties_even() as i64;
                let rounded = at
                    .with_nanosecond(0)
                    .map(|second| second + chrono::Duration::microseconds(micros))
                    .unwrap_or(at);
                Value::String(rounded.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Err(_) => Value::String(text),
        },
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, at_table_precision(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(at_table_precision).collect()),
        other => other,
    }
}

/// The columns (object fields) whose values differ, in the expected row's order.
fn differing_columns(expected: &Value, found: &Value) -> Vec<ColumnDifference> {
    let empty = Map::new();
    let expected = expected.as_object().unwrap_or(&empty);
    let found_fields = found.as_object().unwrap_or(&empty);
    let mut columns: Vec<ColumnDifference> = expected
        .iter()
        .filter(|(column, value)| found_fields.get(*column) != Some(value))
        .map(|(column, value)| ColumnDifference {
            column: column.clone(),
            expected: value.clone(),
            found: found_fields.get(column).cloned().unwrap_or(Value::Null),
        })
        .collect();
    if found.as_object().is_none() {
        columns.push(ColumnDifference {
            column: "*".into(),
            expected: Value::Null,
            found: found.clone(),
        });
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_columns_that_differ_are_named() {
        let expected = json!({"id": "A", "on_hand": 5, "name": "Mug"});
        let found = json!({"id": "A", "on_hand": 4, "name": "Mug"});

        let columns = differing_columns(&expected, &found);

        assert_eq!(
            columns,
            [ColumnDifference {
                column: "on_hand".into(),
                expected: json!(5),
                found: json!(4),
            }]
        );
        assert!(differing_columns(&expected, &expected).is_empty());
    }

    #[test]
    fn timestamps_compare_at_the_tables_microseconds() {
        let event = json!({"expires_at": "2026-12-02T16:02:38.517409433Z"});
        let table = json!({"expires_at": "2026-12-02T16:02:38.517409Z"});
        let up = json!({"expires_at": "2026-12-02T16:04:02.610722613Z"});
        let rounded_up = json!({"expires_at": "2026-12-02T16:04:02.610723Z"});
        let carried = json!({"expires_at": "2026-12-02T16:04:02.999999800Z"});
        let next_second = json!({"expires_at": "2026-12-02T16:04:03Z"});

        assert_eq!(at_table_precision(event.clone()), at_table_precision(table));
        assert_eq!(
            at_table_precision(up),
            at_table_precision(rounded_up.clone())
        );
        assert_eq!(at_table_precision(carried), at_table_precision(next_second));
        assert_ne!(at_table_precision(event), at_table_precision(rounded_up));
    }
}
