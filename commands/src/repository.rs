//! The event repository: postgres-es for reads, a single-statement append for writes.

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use std::cell::Cell;

tokio::task_local! {
    /// Where an append reports the global position of its last event to the command bus that
    /// awaits it (the repository trait returns `()`).
    static APPENDED_POSITION: Cell<Option<i64>>;
}

/// The usual command's single event. JSON is sent as text and parsed by the server into the
/// `json` column as is, cheaper than sqlx's binary `jsonb` round trip through a cast.
const APPEND_ONE: &str = "INSERT INTO events \
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
    VALUES ($1, $2, $3, $4, $5, $6::json, $7::json) RETURNING global_position";

/// All events of one command in one autocommitted statement, returning their positions.
///
/// postgres-es appends with `BEGIN`, one `INSERT` per event and `COMMIT` (three round trips
/// for the usual one event) and cannot report `global_position`; this is one round trip that
/// does. Atomicity is the statement's; a duplicate `(aggregate_type, aggregate_id, sequence)`
/// fails the whole statement, which is the optimistic-concurrency check.
const APPEND: &str = "INSERT INTO events \
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
    SELECT t, i, s, e, v, p::json, m::json \
    FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
      AS u(t, i, s, e, v, p, m) \
    RETURNING global_position";

/// The repository behind every aggregate's store.
pub struct EventRepository {
    reads: PostgresEventRepository,
    pool: PgPool,
}

impl EventRepository {
    /// A repository over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }

    /// Runs `commit` and returns its result with the position its append reported.
    pub async fn capture_position<T>(commit: impl Future<Output = T>) -> (T, Option<i64>) {
        APPENDED_POSITION
            .scope(Cell::new(None), async {
                let result = commit.await;
                (result, APPENDED_POSITION.with(Cell::get))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(events = events.len()))]
    async fn append(&self, events: &[SerializedEvent]) -> Result<i64, PersistenceError> {
        if let [event] = events {
            return sqlx::query_scalar(APPEND_ONE)
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(event.sequence as i64)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(event.payload.to_string())
                .bind(event.metadata.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(persistence_error);
        }
        let text = |f: fn(&SerializedEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        let positions: Vec<i64> = sqlx::query_scalar(APPEND)
            .bind(text(|e| e.aggregate_type.clone()))
            .bind(text(|e| e.aggregate_id.clone()))
            .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
            .bind(text(|e| e.event_type.clone()))
            .bind(text(|e| e.event_version.clone()))
            .bind(text(|e| e.payload.to_string()))
            .bind(text(|e| e.metadata.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(persistence_error)?;
        Ok(positions.into_iter().max().unwrap_or_default())
    }
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            // Only the snapshot stores pass one, and Reserva uses the event-sourced store.
            return self.reads.persist::<A>(events, snapshot_update).await;
        }
        if events.is_empty() {
            return Ok(());
        }
        let position = self.append(events).await?;
        let _ = APPENDED_POSITION.try_with(|p| p.set(Some(position)));
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}
