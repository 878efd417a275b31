//! `/admin/webhook-endpoints` answers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::outbound::endpoints::{Attempt, Delivery, DeliveryStatus, Endpoint};

/// A webhook endpoint just registered, with its signing secret: the only answer that shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegisteredEndpoint {
    /// The endpoint's id.
    pub id: Uuid,
    /// Where deliveries are `POST`ed.
    pub url: String,
    /// The integration-event subjects it is sent.
    pub event_types: Vec<String>,
    /// The key of `Reserva-Signature` (`whsec_…`). Shown once: store it now.
    pub secret: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Events recorded from then on are delivered; earlier ones are not.
    pub created_at: DateTime<Utc>,
    /// Where its deliveries are listed.
    pub deliveries: String,
}

impl From<Endpoint> for RegisteredEndpoint {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            deliveries: format!("/admin/webhook-endpoints/{}/deliveries", endpoint.id),
            id: endpoint.id,
            url: endpoint.url,
            event_types: endpoint.event_types,
            secret: endpoint.secret,
            enabled: endpoint.enabled,
            created_at: endpoint.created_at,
        }
    }
}

/// One event queued for an endpoint, and every attempt to deliver it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    /// The event's global position; sent as `Reserva-Event-Id`.
    pub event_id: i64,
    /// Its subject, e.g. `order.created.v1`.
    pub event_type: String,
    /// Where it stands.
    pub status: WebhookDeliveryStatus,
    /// When it is tried next (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every recorded attempt, first first.
    pub attempts: Vec<WebhookAttemptView>,
}

impl From<Delivery> for WebhookDeliveryView {
    fn from(delivery: Delivery) -> Self {
        Self {
            event_id: delivery.position,
            event_type: delivery.event_type,
            status: delivery.status.into(),
            next_attempt_at: delivery.next_attempt_at,
            created_at: delivery.created_at,
            delivered_at: delivery.delivered_at,
            attempts: delivery
                .attempts
                .into_iter()
                .map(WebhookAttemptView::from)
                .collect(),
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDeliveryStatus {
    /// Waiting for its first attempt, or for a retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Parked after the last allowed attempt failed; not sent again.
    Dead,
}

impl From<DeliveryStatus> for WebhookDeliveryStatus {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Dead => Self::Dead,
        }
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookAttemptView {
    /// 1 for the first (also sent as `Reserva-Delivery-Attempt`).
    pub attempt: i32,
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Why it failed (a non-2xx status, a timeout, a refused connection); absent on success.
    pub error: Option<String>,
}

impl From<Attempt> for WebhookAttemptView {
    fn from(attempt: Attempt) -> Self {
        Self {
            attempt: attempt.attempt,
            attempted_at: attempt.attempted_at,
            duration_ms: attempt.duration_ms,
            status_code: attempt.status_code,
            error: attempt.error,
        }
    }
}
