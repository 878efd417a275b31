//! The integration events other services may rely on, and how stored events become them.
//!
//! Domain events are Reserva's own and change with its rules (they are versioned and upcast
//! inside); integration events are a published contract: each subject carries its major version
//! (`order.created.v1`), and a payload only ever gains optional fields under the same subject.
//! A change that would break a consumer is a new subject (`…v2`) published beside the old one.
//! `docs/events.md` documents every subject with an example.
//!
//! Every message is an [`Envelope`]: where the event sits in the store (`position`, also the
//! `Nats-Msg-Id` that de-duplicates redeliveries), when it happened, the correlation and
//! causation ids of the request that caused it, and the subject-specific `data`, which always
//! names the order, booking or payment it is about.

use chrono::{DateTime, Utc};
use domain::order::OrderEvent;
use domain::payment::PaymentEvent;
use domain::stock_item::StockItemEvent;
use domain::upcast::decode;
use domain::{Money, Owner};
use feed::FeedEvent;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The streams the subjects live in: name, and the subject family each captures.
pub const STREAMS: [(&str, &str); 3] = [
    ("orders", "order"),
    ("payments", "payment"),
    ("inventory", "inventory"),
];

/// Every subject the mapping below produces: what a webhook endpoint may ask for.
pub const SUBJECTS: [&str; 11] = [
    "order.created.v1",
    "order.confirmed.v1",
    "order.cancelled.v1",
    "order.failed.v1",
    "payment.pending.v1",
    "payment.succeeded.v1",
    "payment.failed.v1",
    "inventory.reserved.v1",
    "inventory.released.v1",
    "inventory.low-stock.v1",
    "inventory.out-of-stock.v1",
];

/// The aggregate types whose events can become integration events (bookings only through the
/// seats they hold, which are inventory).
pub fn relayed(aggregate_type: &str) -> bool {
    matches!(aggregate_type, "order" | "payment" | "stock_item")
}

/// One message as published: `subject` without the deployment's prefix, and the envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    /// `order.created.v1`, …
    pub subject: &'static str,
    /// The event's global position in the store; unique, so also the message id.
    pub position: i64,
    /// When the appending transaction started.
    pub occurred_at: DateTime<Utc>,
    /// Shared by everything one request caused (`X-Correlation-ID`).
    pub correlation_id: String,
    /// The request or the event that directly caused this one.
    pub causation_id: String,
    /// The W3C `traceparent` of the span that appended the event, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The subject's own fields.
    pub data: Value,
}

/// A stored event that should become an integration event but cannot be read: it is set
/// aside as a dead letter rather than published wrong or skipped unseen.
#[derive(Debug, thiserror::Error)]
#[error("event {position} ({event_type}) does not decode: {source}")]
pub struct Undecodable {
    position: i64,
    event_type: String,
    source: serde_json::Error,
}

/// What the mapping needs that the event itself does not carry: the owner (order or booking)
/// of a payment, from its `PaymentCreated`.
pub type PaymentOwner = Option<Owner>;

/// The integration event `event` becomes, if any. `payment_owner` is consulted for payment
/// events after the first (only those need it).
///
/// # Errors
/// [`Undecodable`] when the stored payload does not decode into today's event type.
pub fn envelope(
    event: &FeedEvent,
    payment_owner: PaymentOwner,
) -> Result<Option<Envelope>, Undecodable> {
    let mapped = match event.aggregate_type.as_str() {
        "order" => order(&event.aggregate_id, read(event)?),
        "payment" => payment(&event.aggregate_id, read(event)?, payment_owner),
        "stock_item" => inventory(&event.aggregate_id, read(event)?),
        _ => None,
    };
    Ok(mapped.map(|(subject, data)| {
        let metadata: HashMap<String, String> =
            serde_json::from_str(&event.metadata).unwrap_or_default();
        let field = |key: &str| metadata.get(key).cloned().unwrap_or_default();
        Envelope {
            subject,
            position: event.position(),
            occurred_at: event.recorded_at,
            correlation_id: field("correlation_id"),
            causation_id: field("causation_id"),
            traceparent: metadata.get(feed::trace_context::TRACEPARENT).cloned(),
            data,
        }
    }))
}

/// Whether a payment event needs its owner looked up (it is not its `PaymentCreated`).
pub fn needs_payment_owner(event: &FeedEvent) -> bool {
    event.aggregate_type == "payment"
        && matches!(
            event.event_type.as_str(),
            "PaymentSucceeded" | "PaymentFailed"
        )
}

/// The owner a `PaymentCreated` payload names (how [`needs_payment_owner`]'s lookup reads
/// the payment's first event).
pub fn owner_of_created(payload: &str) -> PaymentOwner {
    match serde_json::from_str::<PaymentEvent>(payload) {
        Ok(PaymentEvent::PaymentCreated { owner, .. }) => Some(owner),
        _ => None,
    }
}

fn read<E: serde::de::DeserializeOwned>(event: &FeedEvent) -> Result<E, Undecodable> {
    decode(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )
    .map_err(|source| Undecodable {
        position: event.position(),
        event_type: event.event_type.clone(),
        source,
    })
}

fn money(money: &Money) -> Value {
    json!({ "amount": money.amount, "currency": money.currency })
}

fn owner(owner: Owner) -> Value {
    match owner {
        Owner::Order(id) => json!({ "order_id": id }),
        Owner::Booking(id) => json!({ "booking_id": id }),
    }
}

fn merged(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

fn order(order_id: &str, event: OrderEvent) -> Option<(&'static str, Value)> {
    Some(match event {
        OrderEvent::OrderPlaced {
            customer_id,
            items,
            total,
            expires_at,
        } => (
            "order.created.v1",
            json!({
                "order_id": order_id,
                "customer_id": customer_id,
                "items": items.iter().map(|item| json!({
                    "sku": item.sku,
                    "quantity": item.quantity,
                    "unit_price": money(&item.unit_price),
                })).collect::<Vec<_>>(),
                "total": money(&total),
                "expires_at": expires_at,
            }),
        ),
        OrderEvent::OrderCompleted { payment_id } => (
            "order.confirmed.v1",
            json!({ "order_id": order_id, "payment_id": payment_id }),
        ),
        OrderEvent::OrderCancelled { reason, from, by } => (
            "order.cancelled.v1",
            json!({ "order_id": order_id, "reason": reason, "by": by, "from": from }),
        ),
        OrderEvent::OrderExpired { from } => (
            "order.cancelled.v1",
            json!({ "order_id": order_id, "reason": "expired", "by": "system", "from": from }),
        ),
        OrderEvent::OrderStockFailed { sku, reason } => (
            "order.failed.v1",
            json!({ "order_id": order_id, "cause": "stock_unavailable", "sku": sku,
                    "detail": reason }),
        ),
        OrderEvent::OrderPaymentFailed { reason } => (
            "order.failed.v1",
            json!({ "order_id": order_id, "cause": "payment_failed", "detail": reason }),
        ),
        OrderEvent::OrderStockReserved
        | OrderEvent::OrderPaymentRequested { .. }
        | OrderEvent::OrderRefunded { .. } => return None,
    })
}

fn payment(
    payment_id: &str,
    event: PaymentEvent,
    known_owner: PaymentOwner,
) -> Option<(&'static str, Value)> {
    let base = |owner_of: PaymentOwner| {
        merged(
            json!({ "payment_id": payment_id }),
            owner_of.map_or(Value::Null, owner),
        )
    };
    Some(match event {
        PaymentEvent::PaymentCreated {
            owner: created_for,
            amount,
            provider,
            ..
        } => (
            "payment.pending.v1",
            merged(
                base(Some(created_for)),
                json!({ "amount": money(&amount), "provider": provider }),
            ),
        ),
        PaymentEvent::PaymentSucceeded { provider_event_id } => (
            "payment.succeeded.v1",
            merged(
                base(known_owner),
                json!({ "provider_event_id": provider_event_id }),
            ),
        ),
        PaymentEvent::PaymentFailed {
            provider_event_id,
            reason,
        } => (
            "payment.failed.v1",
            merged(
                base(known_owner),
                json!({ "provider_event_id": provider_event_id, "reason": reason }),
            ),
        ),
        PaymentEvent::PaymentRequiresAction { .. }
        | PaymentEvent::PaymentCanceled { .. }
        | PaymentEvent::PaymentRefunded { .. } => return None,
    })
}

fn inventory(sku: &str, event: StockItemEvent) -> Option<(&'static str, Value)> {
    Some(match event {
        StockItemEvent::StockReserved {
            reservation_id,
            quantity,
            owner: held_for,
            expires_at,
        } => (
            "inventory.reserved.v1",
            merged(
                json!({ "sku": sku, "reservation_id": reservation_id, "quantity": quantity,
                        "expires_at": expires_at }),
                owner(held_for),
            ),
        ),
        StockItemEvent::ReservationReleased {
            reservation_id,
            quantity,
            reason,
        } => (
            "inventory.released.v1",
            json!({ "sku": sku, "reservation_id": reservation_id, "quantity": quantity,
                    "reason": reason }),
        ),
        StockItemEvent::ReservationReturned {
            reservation_id,
            quantity,
            ..
        } => (
            "inventory.released.v1",
            json!({ "sku": sku, "reservation_id": reservation_id, "quantity": quantity,
                    "reason": "returned" }),
        ),
        StockItemEvent::LowStockReached {
            available,
            threshold,
        } => (
            "inventory.low-stock.v1",
            json!({ "sku": sku, "available": available, "threshold": threshold }),
        ),
        StockItemEvent::StockDepleted => (
            "inventory.out-of-stock.v1",
            json!({ "sku": sku, "available": 0 }),
        ),
        StockItemEvent::StockItemRegistered { .. }
        | StockItemEvent::StockRestocked { .. }
        | StockItemEvent::StockAdjusted { .. }
        | StockItemEvent::ReservationCommitted { .. } => return None,
    })
}
