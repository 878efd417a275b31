//! What every handler can reach.

use commands::CommandBus;
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
    /// Rebuilds started over HTTP.
    pub rebuilds: Rebuilds,
    /// Signs Stripe webhooks (`whsec_…`).
    pub webhook_secret: String,
    /// Longest `min_position` wait.
    pub read_wait: Duration,
    /// Renders `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// Tasks that live as long as the state: stopped with it.
    pub background: Background,
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
