//! Webhook endpoints and what was delivered to them: the rows behind the `/admin` routes.

use chrono::{DateTime, Utc};
use projections::queries::{PageRequest, Paged};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

use super::signature;

/// A registered endpoint, secret included (shown once, when it is registered).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries are `POST`ed.
    pub url: String,
    /// The subjects it is sent.
    pub event_types: Vec<String>,
    /// The key of `Reserva-Signature`.
    pub secret: String,
    /// Whether deliveries are queued and sent (no route turns it off yet; SQL can).
    pub enabled: bool,
    /// Events recorded from then on are delivered.
    pub created_at: DateTime<Utc>,
}

/// Registers an endpoint for `event_types` (already validated) with a new secret.
///
/// # Errors
/// Any database error.
pub async fn register(
    pool: &PgPool,
    url: &str,
    event_types: &[String],
) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO webhook_endpoints (id, url, event_types, secret) VALUES ($1, $2, $3, $4) \
         RETURNING id, url, event_types, secret, enabled, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(url)
    .bind(event_types)
    .bind(signature::new_secret())
    .fetch_one(pool)
    .await
}

/// Whether endpoint `id` exists.
///
/// # Errors
/// Any database error.
pub async fn exists(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt, or for a retry.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Parked after the last allowed attempt failed; never sent again.
    Dead,
}

impl DeliveryStatus {
    fn parse(raw: &str) -> Self {
        match raw {
            "delivered" => Self::Delivered,
            "dead" => Self::Dead,
            _ => Self::Pending,
        }
    }
}

/// One delivery (an event for an endpoint) and every attempt of it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's global position (`Reserva-Event-Id`).
    pub position: i64,
    /// Its subject.
    pub event_type: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// When it is tried next (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every recorded attempt, first first.
    pub attempts: Vec<Attempt>,
}

/// One recorded attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: i32,
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i64,
    /// The receiver's status, when it answered.
    pub status_code: Option<i32>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

type DeliveryRow = (
    i64,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// One page of endpoint `id`'s deliveries, newest first in feed order, with their attempts.
///
/// # Errors
/// Any database error.
pub async fn deliveries(
    pool: &PgPool,
    id: Uuid,
    page: PageRequest,
) -> Result<Paged<Delivery>, sqlx::Error> {
    let mut rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT position, event_type, status, next_attempt_at, created_at, delivered_at \
         FROM webhook_deliveries WHERE endpoint_id = $1 \
         ORDER BY transaction_id DESC, position DESC LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(i64::from(page.per_page) + 1)
    .bind(i64::from(page.page.saturating_sub(1)) * i64::from(page.per_page))
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > page.per_page as usize;
    rows.truncate(page.per_page as usize);
    let positions: Vec<i64> = rows.iter().map(|row| row.0).collect();
    let attempts: Vec<(i64, Attempt)> = sqlx::query_as::<_, AttemptRow>(
        "SELECT position, attempt, attempted_at, duration_ms, status_code, error \
         FROM webhook_attempts WHERE endpoint_id = $1 AND position = ANY($2) \
         ORDER BY position, attempt",
    )
    .bind(id)
    .bind(&positions)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(AttemptRow::split)
    .collect();
    let mut by_position: HashMap<i64, Vec<Attempt>> = HashMap::new();
    for (position, attempt) in attempts {
        by_position.entry(position).or_default().push(attempt);
    }
    let items = rows
        .into_iter()
        .map(
            |(position, event_type, status, next_attempt_at, created_at, delivered_at)| {
                let status = DeliveryStatus::parse(&status);
                Delivery {
                    position,
                    event_type,
                    status,
                    next_attempt_at: (status == DeliveryStatus::Pending).then_some(next_attempt_at),
                    created_at,
                    delivered_at,
                    attempts: by_position.remove(&position).unwrap_or_default(),
                }
            },
        )
        .collect();
    Ok(Paged {
        items,
        page: page.page,
        per_page: page.per_page,
        has_more,
    })
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    position: i64,
    #[sqlx(flatten)]
    attempt: Attempt,
}

impl AttemptRow {
    fn split(self) -> (i64, Attempt) {
        (self.position, self.attempt)
    }
}
