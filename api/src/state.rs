//! What every handler can reach.

use commands::CommandBus;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::catalog::ReadCaches;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

use crate::rebuilds::Rebuilds;
use crate::verifier::Verifications;
use crate::workers::Workers;

/// Shared by every worker.
pub struct AppState {
    /// Commands go through it.
    pub bus: CommandBus,
    /// The primary: commands, operations, audit, and queries when no replica is set.
    pub pool: PgPool,
    /// Queries of read models: a streaming replica when `RESERVA_DB__READ_URL` is set (then a
    /// `min_position` wait watches the replica's copy of the checkpoints), else `pool`.
    pub read_pool: PgPool,
    /// Whether `read_pool` is a replica.
    pub reads_from_replica: bool,
    /// Rows of the projections this process writes, kept in memory for reads (empty with a
    /// replica, on an API-only instance, or with `RESERVA_READ__CACHE_ROWS=0`).
    pub read_caches: ReadCaches,
    /// The background work of this process (its projections report their progress).
    pub workers: Arc<Workers>,
    /// Rebuilds started over HTTP.
    pub rebuilds: Rebuilds,
    /// The latest verify of each projection run here.
    pub verifications: Verifications,
    /// Signs Stripe webhooks (`whsec_…`).
    pub webhook_secret: String,
    /// Longest wait of a Stripe delivery for its payment to be recorded.
    pub webhook_wait: Duration,
    /// How long unpaid orders and bookings hold stock.
    pub ttl: Ttl,
    /// Longest `min_position` wait.
    pub read_wait: Duration,
    /// `GET /health/ready` fails while a projection lags more events than this.
    pub ready_max_lag_events: u64,
    /// Renders `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// What this instance runs, as `GET /health/ready` reports it.
    pub instance: Instance,
    /// This process's follower of the feed, for live views (server-sent events).
    pub tail: feed::Tail,
}

/// What this instance runs and what it shares with the others, for operators comparing
/// instances behind one load balancer (`GET /health/ready`'s `instance` check).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Instance {
    /// `api`, `workers` or `all` (`reserva serve --role`).
    pub role: &'static str,
    /// `off`, `per_process` (each instance grants the whole budget) or `shared` (counted in
    /// Redis across instances).
    pub rate_limits: &'static str,
    /// Whether this instance publishes integration events (when it holds the lease).
    pub integration_events: bool,
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
