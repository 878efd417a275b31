//! Snapshots of long streams: a cold load reads the latest snapshot and only the events after
//! it, in one round trip.
//!
//! cqrs-es 0.5's own snapshot store applies a command's events to the aggregate a second time
//! when it commits, so the snapshot it stores is wrong. Reserva's snapshot is the state the
//! command bus already holds after a commit (the aggregate `handle` applied its events to,
//! exactly once), written every [`SnapshotPolicy::every`] events.

use cqrs_es::Aggregate;
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// How often a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// A snapshot whenever an aggregate's sequence crosses a multiple of this (0: never).
    pub every: usize,
}

impl Default for SnapshotPolicy {
    /// Every 500 events: a stream that long takes milliseconds to fold; most aggregates
    /// (an order, a booking, a payment) never reach it.
    fn default() -> Self {
        Self { every: 500 }
    }
}

impl SnapshotPolicy {
    /// Whether appending `count` events that end at `sequence` crosses a snapshot point.
    pub fn due(&self, sequence: usize, count: usize) -> bool {
        self.every > 0 && sequence / self.every > sequence.saturating_sub(count) / self.every
    }
}

/// The snapshot (if any, kind 0) then the events after it (kind 1), in order.
const LOAD: &str = "WITH s AS (\
       SELECT sequence, payload FROM aggregate_snapshots \
       WHERE aggregate_type = $1 AND aggregate_id = $2 AND $3) \
     SELECT 0 AS kind, sequence, NULL::text AS event_type, NULL::text AS event_version, \
            payload::text AS payload FROM s \
     UNION ALL \
     SELECT 1, sequence, event_type, event_version, payload::text FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 \
       AND sequence > coalesce((SELECT sequence FROM s), 0) \
     ORDER BY kind, sequence";

const SAVE: &str = "INSERT INTO aggregate_snapshots (aggregate_type, aggregate_id, sequence, payload) \
     VALUES ($1, $2, $3, $4::jsonb) \
     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
       SET sequence = EXCLUDED.sequence, payload = EXCLUDED.payload, taken_at = now() \
       WHERE aggregate_snapshots.sequence < EXCLUDED.sequence";

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// An event does not decode with today's code (even after upcasting).
    #[error("{aggregate_type} event {sequence} ({event_type}) does not decode: {source}")]
    Undecodable {
        /// The aggregate's type.
        aggregate_type: &'static str,
        /// The event's sequence.
        sequence: i64,
        /// The event's type.
        event_type: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// An aggregate as loaded: its state and the sequence of the last event in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub aggregate: A,
    /// The last event folded in (0 for none).
    pub sequence: usize,
    /// The sequence of the snapshot it started from (0 for none).
    pub from_snapshot: usize,
}

/// Loads `A` `id`: from its latest snapshot when one exists and `use_snapshot`, else from its
/// first event. A snapshot today's code cannot read (its shape changed) is ignored and the
/// stream folded from the start.
///
/// # Errors
/// [`LoadError`].
pub async fn load<A: Aggregate>(
    pool: &PgPool,
    id: &str,
    use_snapshot: bool,
) -> Result<Loaded<A>, LoadError> {
    let rows = sqlx::query(LOAD)
        .bind(A::TYPE)
        .bind(id)
        .bind(use_snapshot)
        .fetch_all(pool)
        .await?;
    let mut loaded = Loaded {
        aggregate: A::default(),
        sequence: 0,
        from_snapshot: 0,
    };
    for row in &rows {
        let sequence: i64 = row.try_get(1)?;
        let payload: &str = row.try_get(4)?;
        if row.try_get::<i32, _>(0)? == 0 {
            match serde_json::from_str(payload) {
                Ok(state) => {
                    loaded.aggregate = state;
                    loaded.sequence = sequence as usize;
                    loaded.from_snapshot = sequence as usize;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(aggregate = A::TYPE, id, %error, "snapshot unreadable; folding the whole stream");
                    return Box::pin(load::<A>(pool, id, false)).await;
                }
            }
        }
        loaded.aggregate.apply(decode::<A>(row, sequence)?);
        loaded.sequence = sequence as usize;
    }
    Ok(loaded)
}

fn decode<A: Aggregate>(row: &PgRow, sequence: i64) -> Result<A::Event, LoadError> {
    let event_type: String = row.try_get(2)?;
    let event_version: &str = row.try_get(3)?;
    let payload: &str = row.try_get(4)?;
    domain::upcast::decode(A::TYPE, &event_type, event_version, payload).map_err(|source| {
        LoadError::Undecodable {
            aggregate_type: A::TYPE,
            sequence,
            event_type,
            source,
        }
    })
}

/// Stores `aggregate` as `A` `id`'s state after `sequence`, unless a later one is stored.
///
/// # Errors
/// Any database error.
pub async fn save<A: Aggregate>(
    pool: &PgPool,
    id: &str,
    sequence: usize,
    aggregate: &A,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(aggregate).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(SAVE)
        .bind(A::TYPE)
        .bind(id)
        .bind(sequence as i64)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SnapshotPolicy;

    #[test]
    fn a_snapshot_is_due_when_a_command_crosses_a_multiple() {
        let every_10 = SnapshotPolicy { every: 10 };
        assert!(every_10.due(10, 1));
        assert!(every_10.due(11, 3));
        assert!(!every_10.due(9, 2));
        assert!(!every_10.due(19, 9));
        assert!(!SnapshotPolicy { every: 0 }.due(10, 10));
    }
}
