//! The event store: embedded migrations and postgres-es wiring.

use cqrs_es::persist::{EventUpcaster, PersistedEventStore, SerializedEvent};
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

/// Builds the store for aggregate `A` over a shared pool, upgrading old payloads as it loads.
pub fn event_store<A: cqrs_es::Aggregate>(pool: &PgPool) -> EventStore<A> {
    PersistedEventStore::new_event_store(EventRepository::new(pool.clone())).with_upcasters(vec![
        Box::new(DomainUpcasters {
            aggregate_type: A::TYPE,
        }),
    ])
}

/// [`domain::upcast`] as cqrs-es's upcaster, for one aggregate type's store: the store loads
/// old rows exactly as the feed and rebuilds read them.
struct DomainUpcasters {
    aggregate_type: &'static str,
}

impl EventUpcaster for DomainUpcasters {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        domain::needs_upcast(self.aggregate_type, event_type, event_version)
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        event.payload = domain::upcast(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            event.payload,
        );
        event
    }
}
