//! The event store: embedded migrations and postgres-es wiring.

use cqrs_es::persist::PersistedEventStore;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Every migration in `migrations/`, embedded so the binary can migrate any database it meets.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

use crate::repository::EventRepository;

/// cqrs-es's event-sourced store for one aggregate type, over [`EventRepository`].
///
/// The snapshot and aggregate stores are deliberately not used: in 0.5 they re-apply new events
/// to an aggregate that `EventSink::write` already applied them to, corrupting the snapshot.
pub type EventStore<A> = PersistedEventStore<EventRepository, A>;

/// Builds the store for aggregate `A` over a shared pool.
pub fn event_store<A: cqrs_es::Aggregate>(pool: &PgPool) -> EventStore<A> {
    PersistedEventStore::new_event_store(EventRepository::new(pool.clone()))
}
