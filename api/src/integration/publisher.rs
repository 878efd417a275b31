//! Publishing integration events to NATS JetStream from a checkpointed feed subscription.
//!
//! The subscription's transaction moves its checkpoint only after every message of the batch
//! was acknowledged by the stream, so a crash or a NATS outage between publishing and
//! committing publishes the batch again: at least once. Each message carries the event's
//! global position as `Nats-Msg-Id`, so the stream drops such repeats inside its duplicate
//! window; consumers that must be exact past that window de-duplicate by `position`.
//!
//! A NATS failure is [`HandlerError::Unavailable`]: the runner backs off and starts again
//! from its checkpoint, parking nothing. Only an event that cannot be read at all becomes a
//! dead letter, as it would for any read model.

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_trait::async_trait;
use feed::{FeedEvent, Handler, HandlerError};
use sqlx::PgConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

use super::events::{self, STREAMS};

/// The subscription's name: its checkpoint, its lock, its dead letters.
pub const NAME: &str = "integration_events";

/// How long the streams keep a message.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long the stream remembers a message id. A republish after a crash or an outage happens
/// within seconds of the first attempt; ten minutes leaves room for a long outage's backlog.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// `NATS_URL` and how the streams are made.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `NATS_URL`, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// `RESERVA_NATS__PREFIX` (default empty): put in front of every subject (`acme.` +
    /// `order.created.v1`) and stream name (`acme_orders`), so that several deployments can
    /// share one NATS account. Letters, digits, `-` and `_` only.
    pub prefix: String,
    /// `RESERVA_NATS__REPLICAS` (default `1`): copies of each stream in a NATS cluster.
    pub replicas: usize,
}

impl NatsSettings {
    /// The subject a message goes to.
    pub fn subject(&self, subject: &str) -> String {
        if self.prefix.is_empty() {
            subject.to_owned()
        } else {
            format!("{}.{subject}", self.prefix)
        }
    }

    /// The name of one of the [`STREAMS`].
    pub fn stream(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}_{name}", self.prefix)
        }
    }
}

/// The feed handler that publishes.
pub struct Publisher {
    settings: NatsSettings,
    /// Connected on the first batch, and again after a failed first attempt: a NATS that is
    /// down when the process starts delays publishing (the runner backs off and retries),
    /// never the service. Once connected, the client reconnects by itself.
    jetstream: OnceCell<jetstream::Context>,
    /// Set once the streams exist; until then every batch first makes sure they do.
    streams_ready: AtomicBool,
}

impl Publisher {
    /// A publisher that connects when it first has something to publish.
    pub fn new(settings: NatsSettings) -> Self {
        Self {
            settings,
            jetstream: OnceCell::new(),
            streams_ready: AtomicBool::new(false),
        }
    }

    async fn jetstream(&self) -> Result<&jetstream::Context, HandlerError> {
        self.jetstream
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .name("reserva")
                    .connection_timeout(Duration::from_secs(2))
                    .request_timeout(Some(Duration::from_secs(5)))
                    .connect(self.settings.url.as_str())
                    .await
                    .map_err(|e| unavailable("connecting", &e))?;
                tracing::info!(url = %self.settings.url, "integration events: connected to NATS");
                Ok(jetstream::new(client))
            })
            .await
    }

    /// Creates the streams that do not exist (an existing stream is left as its operator
    /// configured it).
    async fn ensure_streams(&self) -> Result<(), HandlerError> {
        if self.streams_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let jetstream = self.jetstream().await?;
        for (name, family) in STREAMS {
            jetstream
                .get_or_create_stream(stream::Config {
                    name: self.settings.stream(name),
                    subjects: vec![self.settings.subject(&format!("{family}.>"))],
                    max_age: RETENTION,
                    num_replicas: self.settings.replicas,
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable("creating a stream", &e))?;
        }
        self.streams_ready.store(true, Ordering::Release);
        Ok(())
    }
}

#[async_trait]
impl Handler for Publisher {
    fn name(&self) -> &str {
        NAME
    }

    fn wants(&self, aggregate_type: &str) -> bool {
        events::relayed(aggregate_type)
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        batch: &[FeedEvent],
    ) -> Result<(), HandlerError> {
        self.ensure_streams().await?;
        let jetstream = self.jetstream().await?;
        // Sent back to back, acknowledged after: one round trip per batch, not per message.
        let mut acks = Vec::with_capacity(batch.len());
        for event in batch {
            let Some(envelope) = envelope_of(conn, event).await? else {
                continue;
            };
            let body = serde_json::to_vec(&envelope)
                .map_err(|e| HandlerError::Rejected(format!("encoding: {e}")))?;
            let mut message = PublishMessage::build()
                .payload(body.into())
                .message_id(envelope.position.to_string())
                .header("Reserva-Correlation-Id", envelope.correlation_id.as_str());
            if let Some(traceparent) = &envelope.traceparent {
                message = message.header("traceparent", traceparent.as_str());
            }
            let ack = jetstream
                .send_publish(self.settings.subject(envelope.subject), message)
                .await
                .map_err(|e| unavailable("publishing", &e))?;
            acks.push((envelope.subject, ack));
        }
        for (subject, ack) in acks {
            ack.await
                .map_err(|e| unavailable("waiting for the stream's ack", &e))?;
            metrics::counter!("reserva_integration_events_published_total", "subject" => subject)
                .increment(1);
        }
        Ok(())
    }
}

/// The integration event of `event` (`None` for events nothing outside relies on), with the
/// owner of a payment looked up when the event needs it: what NATS and the webhook outbox
/// both send.
///
/// # Errors
/// [`HandlerError::Rejected`] for an event that does not decode; any database error.
pub async fn envelope_of(
    conn: &mut PgConnection,
    event: &FeedEvent,
) -> Result<Option<events::Envelope>, HandlerError> {
    let owner = if events::needs_payment_owner(event) {
        payment_owner(conn, &event.aggregate_id).await?
    } else {
        None
    };
    events::envelope(event, owner)
        .map_err(|undecodable| HandlerError::Rejected(undecodable.to_string()))
}

/// The order or booking a payment belongs to, from its first event (`PaymentCreated`).
///
/// # Errors
/// Any database error.
pub async fn payment_owner(
    conn: &mut PgConnection,
    payment_id: &str,
) -> Result<events::PaymentOwner, HandlerError> {
    let created: Option<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events \
         WHERE aggregate_type = 'payment' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(payment_id)
    .fetch_optional(conn)
    .await?;
    Ok(created.as_deref().and_then(events::owner_of_created))
}

fn unavailable(doing: &str, error: &dyn std::fmt::Display) -> HandlerError {
    HandlerError::Unavailable(format!("NATS: {doing}: {error}"))
}
