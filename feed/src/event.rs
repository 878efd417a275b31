//! One stored event as readers see it, and where a reader stands.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::fmt;

/// Where a reader stands in the feed: the last event it handled.
///
/// Never compare positions alone: a later transaction can hold a lower `global_position`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkpoint {
    /// `events.transaction_id` (an `xid8`, carried as `bigint`).
    pub transaction_id: i64,
    /// `events.global_position`.
    pub global_position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Self = Self {
        transaction_id: 0,
        global_position: 0,
    };
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.global_position, self.transaction_id)
    }
}

/// One stored event as readers see it. The payload stays JSON text until a reader that cares
/// about it decodes it into its aggregate's event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    /// Its place in the feed.
    pub checkpoint: Checkpoint,
    /// The aggregate's `TYPE` (`order`, `stock_item`, …).
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The aggregate's sequence number of this event (1-based).
    pub sequence: i64,
    /// The event's variant name.
    pub event_type: String,
    /// The version the payload was written under (old ones are upgraded when decoded).
    pub event_version: String,
    /// The serialized domain event, as it was written.
    pub payload: String,
    /// The serialized command metadata (correlation, causation, actor, request).
    pub metadata: String,
    /// When the appending transaction started.
    pub recorded_at: DateTime<Utc>,
}

impl FeedEvent {
    /// The event's global position (what command responses report).
    pub fn position(&self) -> i64 {
        self.checkpoint.global_position
    }

    pub(crate) fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            checkpoint: Checkpoint {
                transaction_id: row.try_get(0)?,
                global_position: row.try_get(1)?,
            },
            aggregate_type: row.try_get(2)?,
            aggregate_id: row.try_get(3)?,
            sequence: row.try_get(4)?,
            event_type: row.try_get(5)?,
            payload: row.try_get(6)?,
            metadata: row.try_get(7)?,
            recorded_at: row.try_get(8)?,
            event_version: row.try_get(9)?,
        })
    }
}
