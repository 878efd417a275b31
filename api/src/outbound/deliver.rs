//! Sending queued deliveries: one dispatcher across instances, one task per endpoint.
//!
//! The dispatcher holds a session advisory lock (on a connection of its own) while it runs,
//! like a subscription's runner: other instances stand by and take over when its connection
//! goes away. It looks for endpoints with pending deliveries whenever the outbox queued some
//! in this process, and every poll interval otherwise, and gives each such endpoint a task.
//!
//! An endpoint's task sends its deliveries one at a time in feed order: a delivery is
//! attempted only once every earlier one of that endpoint is delivered or dead, and waits out
//! its back-off before the next try. Tasks run side by side and every request has a
//! timeout, so a hanging or failing receiver holds back its own queue and nobody else's.
//!
//! A dead (parked) delivery does not block its endpoint: the next one is attempted at once.
//! Deliveries are independent notifications each carrying the whole event, and one payload a
//! receiver keeps refusing (a bug on its side, say) must not stop every later notification;
//! the order that holds is that nothing is sent before every earlier event was settled.
//!
//! Each attempt is recorded after the receiver answered (or the timeout passed), in one
//! transaction with the delivery's new state. A crash in between loses the record, not the
//! delivery: it is still pending and is sent again (at least once, same `Reserva-Event-Id`).

use actix_web::http::header::CONTENT_TYPE;
use chrono::Utc;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{WebhookSettings, signature};

/// The dispatcher's lease (a session advisory lock): one dispatcher across instances.
pub const LEASE: &str = "reserva.webhooks.dispatch";

/// Sends deliveries while this process holds the lease, standing by otherwise, until `stop`.
/// `queued` wakes it when the outbox committed new deliveries.
pub async fn run(
    pool: PgPool,
    settings: WebhookSettings,
    queued: Arc<Notify>,
    stop: CancellationToken,
) {
    let client = match client(&settings) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "outbound webhooks: no HTTP client; nothing will be delivered");
            return;
        }
    };
    let dispatcher = Dispatcher {
        pool,
        settings,
        client,
        queued,
    };
    loop {
        match lease(&dispatcher.pool).await {
            Ok(Some(lease)) => dispatcher.lead(lease, &stop).await,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "outbound webhooks: cannot take the lease"),
        }
        tokio::select! {
            () = tokio::time::sleep(dispatcher.settings.poll_interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The HTTP client of every attempt: bounded by the timeout, and never following redirects
/// (a registered URL is the only place deliveries go).
///
/// # Errors
/// The TLS backend cannot be initialized.
pub fn client(settings: &WebhookSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Reserva-Webhooks/1")
        .build()
}

/// The lease's connection, when the lock was free.
async fn lease(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = feed::locks::dedicated_connection(pool, "webhooks dispatcher").await?;
    if feed::locks::try_session_lock(&mut conn, LEASE, "").await? {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

struct Dispatcher {
    pool: PgPool,
    settings: WebhookSettings,
    client: reqwest::Client,
    queued: Arc<Notify>,
}

impl Dispatcher {
    /// Runs endpoint tasks until `stop` or until the lease's connection fails. Every task is
    /// aborted on the way out: an attempt cut short is unrecorded, so it is sent again.
    async fn lead(&self, mut lease: PgConnection, stop: &CancellationToken) {
        tracing::info!("outbound webhooks: dispatching");
        let mut tasks = JoinSet::new();
        let mut serving: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut active: HashSet<Uuid> = HashSet::new();
        loop {
            // Finished tasks first, so an endpoint whose task just emptied its queue gets a
            // new one for what was queued since. A task that ended on an error is replaced
            // only here, at the next poll or wake-up: never in a tight loop.
            while let Some(done) = tasks.try_join_next_with_id() {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                if let Some(endpoint) = serving.remove(&id) {
                    active.remove(&endpoint);
                }
            }
            if let Err(error) = lease.ping().await {
                tracing::warn!(%error, "outbound webhooks: lease lost; standing by");
                break;
            }
            match pending_endpoints(&self.pool).await {
                Ok(endpoints) => {
                    for endpoint in endpoints {
                        if active.insert(endpoint) {
                            let task = Endpoint {
                                id: endpoint,
                                pool: self.pool.clone(),
                                client: self.client.clone(),
                                settings: self.settings,
                            };
                            let handle = tasks.spawn(task.serve());
                            serving.insert(handle.id(), endpoint);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "outbound webhooks: cannot read the queue"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = self.queued.notified() => {}
                () = stop.cancelled() => break,
            }
        }
        tasks.shutdown().await;
        feed::locks::release(lease).await;
    }
}

/// Enabled endpoints with pending deliveries.
async fn pending_endpoints(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT e.id FROM webhook_endpoints e WHERE e.enabled AND EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending')",
    )
    .fetch_all(pool)
    .await
}

/// The oldest pending delivery of an endpoint, and how long until it is due.
#[derive(sqlx::FromRow)]
struct Head {
    position: i64,
    event_type: String,
    body: String,
    attempts: i32,
    url: String,
    secret: String,
    wait_ms: i64,
}

/// What one attempt came to.
struct Outcome {
    attempted_at: chrono::DateTime<Utc>,
    duration: Duration,
    status_code: Option<u16>,
    error: Option<String>,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// One endpoint's queue, served by one task.
struct Endpoint {
    id: Uuid,
    pool: PgPool,
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl Endpoint {
    /// Sends the endpoint's deliveries in feed order until none is pending (or the database
    /// fails; the dispatcher starts another task on its next look).
    async fn serve(self) {
        loop {
            let head = match self.head().await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(endpoint = %self.id, %error, "outbound webhooks: cannot read the queue");
                    return;
                }
            };
            if head.wait_ms > 0 {
                let wait = u64::try_from(head.wait_ms).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            let attempt = head.attempts + 1;
            let outcome = self.send(&head, attempt).await;
            if let Err(error) = self.record(&head, attempt, &outcome).await {
                // Unrecorded, the delivery is still pending: it is sent again.
                tracing::warn!(endpoint = %self.id, position = head.position, %error, "outbound webhooks: attempt not recorded");
                return;
            }
        }
    }

    async fn head(&self) -> Result<Option<Head>, sqlx::Error> {
        sqlx::query_as(
            "SELECT d.position, d.event_type, d.body, d.attempts, e.url, e.secret, \
                    GREATEST(0, CEIL(EXTRACT(EPOCH FROM d.next_attempt_at - clock_timestamp()) \
                                     * 1000))::bigint AS wait_ms \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.endpoint_id = $1 AND d.status = 'pending' AND e.enabled \
             ORDER BY d.transaction_id, d.position LIMIT 1",
        )
        .bind(self.id)
        .fetch_optional(&self.pool)
        .await
    }

    /// One signed `POST` of the delivery's body.
    async fn send(&self, head: &Head, attempt: i32) -> Outcome {
        let attempted_at = Utc::now();
        let started = Instant::now();
        let signed = signature::sign(&head.secret, attempted_at.timestamp(), head.body.as_bytes());
        let sent = self
            .client
            .post(&head.url)
            .header(CONTENT_TYPE.as_str(), "application/json")
            .header(signature::HEADER, signed)
            .header("Reserva-Event-Id", head.position.to_string())
            .header("Reserva-Event-Type", head.event_type.as_str())
            .header("Reserva-Delivery-Attempt", attempt.to_string())
            .body(head.body.clone())
            .send()
            .await;
        let (status_code, error) = match sent {
            Ok(response) if response.status().is_success() => (Some(response.status()), None),
            Ok(response) => (
                Some(response.status()),
                Some(format!("answered {}", response.status())),
            ),
            Err(error) if error.is_timeout() => (
                None,
                Some(format!(
                    "no answer within {} ms",
                    self.settings.timeout.as_millis()
                )),
            ),
            Err(error) => (None, Some(describe(&error))),
        };
        Outcome {
            attempted_at,
            duration: started.elapsed(),
            status_code: status_code.map(|status| status.as_u16()),
            error,
        }
    }

    /// Records the attempt and the delivery's new state in one transaction. Changes nothing
    /// if the delivery moved meanwhile (a dispatcher that lost its lease recording late).
    async fn record(
        &self,
        head: &Head,
        attempt: i32,
        outcome: &Outcome,
    ) -> Result<(), sqlx::Error> {
        let status = if outcome.succeeded() {
            "delivered"
        } else if u32::try_from(attempt).unwrap_or(u32::MAX) >= self.settings.max_attempts {
            "dead"
        } else {
            "pending"
        };
        let retry_in = self
            .settings
            .backoff
            .delay(u32::try_from(attempt).unwrap_or(1));
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $3, status = $4, \
                 next_attempt_at = now() + $5 * interval '1 millisecond', \
                 delivered_at = CASE WHEN $4 = 'delivered' THEN now() END \
             WHERE endpoint_id = $1 AND position = $2 AND status = 'pending' AND attempts = $3 - 1",
        )
        .bind(self.id)
        .bind(head.position)
        .bind(attempt)
        .bind(status)
        .bind(i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_attempts \
                 (endpoint_id, position, attempt, attempted_at, duration_ms, status_code, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.id)
        .bind(head.position)
        .bind(attempt)
        .bind(outcome.attempted_at)
        .bind(i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX))
        .bind(outcome.status_code.map(i32::from))
        .bind(outcome.error.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let result = if outcome.succeeded() {
            "delivered"
        } else {
            "failed"
        };
        metrics::counter!("reserva_webhook_attempts_total", "outcome" => result).increment(1);
        match status {
            "dead" => {
                metrics::counter!("reserva_webhook_deliveries_dead_total").increment(1);
                tracing::warn!(endpoint = %self.id, position = head.position, attempt, error = outcome.error.as_deref().unwrap_or_default(), "outbound webhook parked as dead after its last attempt");
            }
            "pending" => {
                tracing::debug!(endpoint = %self.id, position = head.position, attempt, error = outcome.error.as_deref().unwrap_or_default(), ?retry_in, "outbound webhook failed; retrying");
            }
            _ => {}
        }
        Ok(())
    }
}

/// A failed request with its causes (reqwest's own message names only the URL).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
