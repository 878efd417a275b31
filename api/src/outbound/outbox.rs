//! The feed subscription that queues deliveries: the outbox of every endpoint.
//!
//! It runs inside the runner's batch transaction, so the queued deliveries and the moved
//! checkpoint commit together: an event is queued for its endpoints exactly once, whatever
//! crashes. It only inserts rows; sending is [`super::deliver`]'s, outside any feed
//! transaction, so a slow receiver never holds the feed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use feed::{FeedEvent, Handler, HandlerError};
use sqlx::PgConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::integration::events;
use crate::integration::publisher::envelope_of;

/// The subscription's name: its checkpoint, its lock, its dead letters.
pub const NAME: &str = "outbound_webhooks";

/// The feed handler that queues deliveries.
pub struct Outbox {
    /// Wakes the dispatcher once deliveries were committed.
    queued: Arc<Notify>,
    /// Deliveries the batch being committed queued (counted once it has committed).
    inserted: AtomicU64,
}

impl Outbox {
    /// An outbox that wakes `queued` after a batch queued deliveries.
    pub fn new(queued: Arc<Notify>) -> Self {
        Self {
            queued,
            inserted: AtomicU64::new(0),
        }
    }
}

/// An endpoint as the outbox sees it.
#[derive(sqlx::FromRow)]
struct Subscriber {
    id: Uuid,
    event_types: Vec<String>,
    created_at: DateTime<Utc>,
}

/// The rows one batch inserts, column by column (one `INSERT … SELECT FROM unnest`).
#[derive(Default)]
struct Rows {
    endpoints: Vec<Uuid>,
    positions: Vec<i64>,
    transactions: Vec<i64>,
    subjects: Vec<String>,
    bodies: Vec<String>,
}

#[async_trait]
impl Handler for Outbox {
    fn name(&self) -> &str {
        NAME
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        events::relayed(aggregate_type)
    }

    fn committed(&self, _aggregate_ids: &[&str]) {
        let queued = self.inserted.swap(0, Ordering::AcqRel);
        if queued > 0 {
            metrics::counter!("reserva_webhook_deliveries_queued_total").increment(queued);
            self.queued.notify_one();
        }
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        batch: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        let subscribers: Vec<Subscriber> = sqlx::query_as(
            "SELECT id, event_types, created_at FROM webhook_endpoints WHERE enabled",
        )
        .fetch_all(&mut *conn)
        .await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        let mut rows = Rows::default();
        for event in batch {
            let wanting: Vec<&Subscriber> = subscribers
                .iter()
                .filter(|s| event.recorded_at >= s.created_at)
                .collect();
            if wanting.is_empty() {
                continue;
            }
            let Some(envelope) = envelope_of(conn, event).await? else {
                continue;
            };
            let wanting: Vec<Uuid> = wanting
                .iter()
                .filter(|s| s.event_types.iter().any(|t| t == envelope.subject))
                .map(|s| s.id)
                .collect();
            if wanting.is_empty() {
                continue;
            }
            let body = serde_json::to_string(&envelope)
                .map_err(|e| HandlerError::Rejected(format!("encoding: {e}")))?;
            for endpoint in wanting {
                rows.endpoints.push(endpoint);
                rows.positions.push(envelope.position);
                rows.transactions.push(event.checkpoint.transaction_id);
                rows.subjects.push(envelope.subject.to_owned());
                rows.bodies.push(body.clone());
            }
        }
        if rows.endpoints.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_deliveries \
                 (endpoint_id, position, transaction_id, event_type, body) \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) \
             ON CONFLICT (endpoint_id, position) DO NOTHING",
        )
        .bind(&rows.endpoints)
        .bind(&rows.positions)
        .bind(&rows.transactions)
        .bind(&rows.subjects)
        .bind(&rows.bodies)
        .execute(&mut *conn)
        .await?;
        // A rolled-back batch leaves a stale count: one needless wake-up, one wrong sample.
        self.inserted
            .store(rows.endpoints.len() as u64, Ordering::Release);
        Ok(())
    }
}
