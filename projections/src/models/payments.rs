//! Payments, by id and by the order or booking they pay for.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::booking::Booking;
use domain::order::Order;
use domain::payment::{Payment, PaymentEvent, PaymentStatus};
use domain::{Money, Owner};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::read_model::{Applied, ReadModel};

/// One row of `rm_payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRow {
    /// The payment id.
    pub id: Uuid,
    /// `order` or `booking`.
    pub owner_kind: String,
    /// The order's or booking's id.
    pub owner_id: Uuid,
    /// Lower-case status name (`created`, `succeeded`, …).
    pub status: String,
    /// What is charged.
    pub amount: Money,
    /// What has been refunded so far.
    pub refunded: Option<Money>,
    /// `stripe` or `simulated`.
    pub provider: String,
    /// The provider's intent id.
    pub provider_intent_id: String,
    /// What the client needs to confirm the intent.
    pub client_secret: Option<String>,
    /// Why it failed or was canceled.
    pub failure_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// Last event folded in.
    pub position: i64,
}

/// The `payments` read model.
pub struct Payments;

impl ReadModel for Payments {
    const NAME: &'static str = "payments";
    /// Orders and bookings are read joined with their payments (see `joined`).
    const FOLLOWS: &'static [&'static str] = &[Order::TYPE, Booking::TYPE];
    const TABLE: &'static str = "rm_payments";
    const KEY_TYPE: &'static str = "uuid";
    type Aggregate = Payment;
    type Row = PaymentRow;

    fn apply(
        row: Option<PaymentRow>,
        id: &str,
        event: PaymentEvent,
        applied: Applied,
    ) -> Result<Option<PaymentRow>, String> {
        let mut row = match (row, event) {
            (
                _,
                PaymentEvent::PaymentCreated {
                    owner,
                    amount,
                    provider,
                    provider_intent_id,
                    client_secret,
                },
            ) => {
                let (owner_kind, owner_id) = match owner {
                    Owner::Order(id) => ("order", id.0),
                    Owner::Booking(id) => ("booking", id.0),
                };
                PaymentRow {
                    id: id.parse().map_err(|e| format!("payment id {id}: {e}"))?,
                    owner_kind: owner_kind.to_owned(),
                    owner_id,
                    status: PaymentStatus::Created.as_str().to_owned(),
                    amount,
                    refunded: None,
                    provider,
                    provider_intent_id,
                    client_secret,
                    failure_reason: None,
                    created_at: applied.recorded_at,
                    updated_at: applied.recorded_at,
                    position: 0,
                }
            }
            (None, _) => return Err(super::missing(id)),
            (Some(mut row), event) => {
                let status = match event {
                    PaymentEvent::PaymentCreated { .. } => PaymentStatus::Created,
                    PaymentEvent::PaymentRequiresAction { .. } => PaymentStatus::RequiresAction,
                    PaymentEvent::PaymentSucceeded { .. } => PaymentStatus::Succeeded,
                    PaymentEvent::PaymentFailed { reason, .. } => {
                        row.failure_reason = Some(reason);
                        PaymentStatus::Failed
                    }
                    PaymentEvent::PaymentCanceled { reason, .. } => {
                        row.failure_reason = Some(reason);
                        PaymentStatus::Canceled
                    }
                    PaymentEvent::PaymentRefunded { refunded_total, .. } => {
                        row.refunded = Some(refunded_total);
                        PaymentStatus::Refunded
                    }
                };
                row.status = status.as_str().to_owned();
                row
            }
        };
        row.updated_at = applied.recorded_at;
        row.position = applied.position;
        Ok(Some(row))
    }
}
