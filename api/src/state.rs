//! What every handler can reach.

use commands::CommandBus;
use commands::feed::subscription::SubscriptionHandle;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::catalog::Running;
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;

use crate::rebuilds::Rebuilds;

/// Shared by every worker.
pub struct AppState {
    /// Commands go through it.
    pub bus: CommandBus,
    /// Queries read read models through it.
    pub pool: PgPool,
    /// The projections this process runs (each may be in standby behind another process).
    pub projections: Running,
    /// The order and booking sagas this process runs (each may be in standby).
    pub sagas: Vec<SubscriptionHandle>,
    /// Rebuilds started over HTTP.
    pub rebuilds: Rebuilds,
    /// Signs Stripe webhooks (`whsec_…`).
    pub webhook_secret: String,
    /// How long unpaid orders and bookings hold stock.
    pub ttl: Ttl,
    /// Longest `min_position` wait.
    pub read_wait: Duration,
    /// Renders `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// Tasks that live as long as the state: stopped with it.
    pub background: Background,
}

/// How long an unpaid order or booking keeps what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Ttl {
    /// Orders.
    pub order: Duration,
    /// Bookings.
    pub booking: Duration,
}

impl Ttl {
    /// The deadline of something placed now that lives `ttl`.
    pub fn deadline(ttl: Duration) -> chrono::DateTime<chrono::Utc> {
        // A TTL beyond chrono's range is configuration nonsense; cap it at a century.
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(36_500));
        chrono::Utc::now() + ttl
    }
}

/// Aborts its tasks when dropped, so a stopped server leaves nothing running.
#[derive(Default)]
pub struct Background(pub Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
