//! Outbound webhooks: sellers and back offices told of new orders over HTTP, without a broker.
//!
//! An operator registers an endpoint (`POST /admin/webhook-endpoints`: a URL and the
//! integration-event subjects it wants) and gets its signing secret once. Then:
//!
//! 1. [`outbox`]: a checkpointed feed subscription ([`outbox::NAME`]) maps stored events with
//!    the integration-event mapping ([`crate::integration::events`]) and, inside its batch
//!    transaction, inserts one pending delivery per (endpoint that wants the subject, event).
//!    The key `(endpoint, position)` makes a replayed batch insert nothing twice; no HTTP
//!    happens inside the feed's transaction.
//! 2. [`deliver`]: one dispatcher across instances (a lease, like every subscription) sends
//!    each endpoint's deliveries in feed order, one endpoint per task, so a slow or failing
//!    endpoint delays nobody else. Every attempt is signed ([`signature`]), bounded by a
//!    timeout, and recorded; failures are retried with exponential back-off and, after
//!    [`WebhookSettings::max_attempts`], the delivery is parked as `dead`.
//! 3. [`endpoints`]: registration and the deliveries an operator inspects.
//!
//! Delivery is at least once: a crash after the receiver answered but before the attempt was
//! recorded sends it again, with the same `Reserva-Event-Id`, which receivers de-duplicate
//! on (`docs/webhook-receiver.md`).

pub mod deliver;
pub mod endpoints;
pub mod outbox;
pub mod signature;

use std::time::Duration;

use feed::backoff::Backoff;

/// How deliveries are attempted (`RESERVA_WEBHOOKS__*`).
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// `RESERVA_WEBHOOKS__MAX_ATTEMPTS` (default `8`): attempts of one delivery before it is
    /// parked as `dead`.
    pub max_attempts: u32,
    /// `RESERVA_WEBHOOKS__RETRY_BASE_MS` (default `10000`) and `…__RETRY_MAX_MS` (default
    /// `3600000`): the wait after the first failure, doubling (with jitter) up to the cap.
    /// With the defaults a delivery is parked about 20 minutes after its first failure.
    pub backoff: Backoff,
    /// `RESERVA_WEBHOOKS__TIMEOUT_MS` (default `10000`): the longest one attempt may take,
    /// connecting included. A receiver that does not answer in time counts as a failure.
    pub timeout: Duration,
    /// How often the dispatcher looks for deliveries when nothing woke it (new deliveries
    /// committed in this process wake it at once); also how often a dispatcher in standby
    /// tries to take the lease.
    pub poll_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff: Backoff::new(Duration::from_secs(10), Duration::from_secs(3600)),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}
