//! The database behind a [`TestApp`] read directly: events, head, snapshots, locks, deadlines.

use crate::TestApp;
use serde_json::Value;
use sqlx::Row;

/// One row of the `events` table.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Per-aggregate sequence.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub payload: Value,
    /// Metadata.
    pub metadata: Value,
    /// Global position (database-filled).
    pub global_position: Option<i64>,
    /// Writing transaction (database-filled).
    pub transaction_id: Option<i64>,
}

impl TestApp {
    /// The highest global position in the store (0 when empty): reads made with it as
    /// `min_position` see every write so far.
    pub async fn head(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("head")
    }

    /// Every stored event, in global order.
    pub async fn all_events(&self) -> Vec<StoredEvent> {
        self.query_events("TRUE", None).await
    }

    /// The events of one aggregate, in sequence order.
    pub async fn events_for(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<StoredEvent> {
        let filter = format!("aggregate_type = '{aggregate_type}' AND aggregate_id = $1");
        self.query_events(&filter, Some(aggregate_id)).await
    }

    /// Number of stored events.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    async fn query_events(&self, filter: &str, id: Option<&str>) -> Vec<StoredEvent> {
        let sql = format!(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, payload, metadata, \
             global_position, transaction_id::text::bigint AS transaction_id \
             FROM events WHERE {filter} ORDER BY global_position"
        );
        let mut query = sqlx::query(&sql);
        if let Some(id) = id {
            query = query.bind(id);
        }
        query
            .fetch_all(&self.pool)
            .await
            .expect("read events")
            .into_iter()
            .map(|row| StoredEvent {
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                sequence: row.get("sequence"),
                event_type: row.get("event_type"),
                payload: row.get("payload"),
                metadata: row.get("metadata"),
                global_position: row.get("global_position"),
                transaction_id: row.get("transaction_id"),
            })
            .collect()
    }

    /// Every row of a read-model table as JSON text, ordered by `id`: two snapshots are equal
    /// exactly when the tables hold the same rows.
    pub async fn snapshot(&self, table: &str) -> Vec<String> {
        sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM {table} t ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("snapshot {table}: {e}"))
    }

    /// Runs `lock` (e.g. `SELECT pg_advisory_lock(...)`) on a connection of its own, outside
    /// the pool, as another process would: the lock holds until the connection is closed
    /// or dropped.
    pub async fn hold_lock(&self, lock: &str) -> sqlx::PgConnection {
        let mut conn = feed::locks::dedicated_connection(&self.pool, "test lock holder")
            .await
            .expect("a connection of its own");
        sqlx::query(lock)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{lock}: {e}"));
        conn
    }

    /// Runs the deadline job once on the server's bus, as the scheduler would (100 rows per
    /// claim), and returns what it did; panics when it cannot claim.
    pub async fn run_deadlines_once(&self) -> commands::deadlines::Expired {
        commands::deadlines::run_once(&self.bus, 100)
            .await
            .expect("run the deadline job once")
    }
}
