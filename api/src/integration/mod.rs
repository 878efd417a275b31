//! Integration events: what other services learn from Reserva, published to NATS JetStream.
//!
//! Other services never read the event store. When `NATS_URL` is set, one checkpointed feed
//! subscription ([`publisher::NAME`], one runner across instances like every subscription)
//! turns the events they may rely on into versioned messages on `order.*.v1`, `payment.*.v1`
//! and `inventory.*.v1` (streams `orders`, `payments`, `inventory`), at least once and
//! de-duplicated by the stream on the event's global position.
//!
//! - [`events`]: the published contract and the mapping from stored events.
//! - [`publisher`]: the feed handler that publishes, and its settings.

pub mod events;
pub mod publisher;

pub use publisher::{NatsSettings, Publisher};
