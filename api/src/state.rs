//! What every handler can reach.

use commands::CommandBus;
use feed::SubscriptionHandle;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::catalog::Running;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rebuilds::Rebuilds;
use crate::verifier::Verifications;

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
    /// The latest verify of each projection run here.
    pub verifications: Verifications,
    /// Signs Stripe webhooks (`whsec_…`).
    pub webhook_secret: String,
    /// How long unpaid orders and bookings hold stock.
    pub ttl: Ttl,
    /// Longest `min_position` wait.
    pub read_wait: Duration,
    /// `GET /health/ready` fails while a projection lags more events than this.
    pub ready_max_lag_events: u64,
    /// Renders `GET /metrics`.
    pub metrics: PrometheusHandle,
    /// Tasks that live as long as the state: aborted with it, or stopped cleanly.
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

/// Background work that lives as long as the state: aborted when it is dropped (a crash, as
/// far as the work can tell), or stopped cleanly by [`Background::stop`].
#[derive(Default)]
pub struct Background {
    /// Tasks with nothing to finish (wake-up relays): aborted on stop and drop.
    tasks: Vec<JoinHandle<()>>,
    /// Tasks told to stop through their channel (`true`); each holds the only receiver, so
    /// the channel closes when the task has ended.
    stoppable: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Background {
    /// Keeps `task` until the state goes away.
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Starts a task that ends cleanly when its receiver turns `true` (and must drop the
    /// receiver when it ends).
    pub fn spawn_stoppable(&mut self, start: impl FnOnce(watch::Receiver<bool>) -> JoinHandle<()>) {
        let (stop, requested) = watch::channel(false);
        self.stoppable.push((stop, start(requested)));
    }

    /// Asks every stoppable task to stop, waits until they have, then aborts the rest.
    pub async fn stop(&self) {
        for (stop, _) in &self.stoppable {
            stop.send_replace(true);
        }
        for (stop, _) in &self.stoppable {
            stop.closed().await;
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in self
            .tasks
            .iter()
            .chain(self.stoppable.iter().map(|(_, task)| task))
        {
            task.abort();
        }
    }
}

impl AppState {
    /// Stops the background work cleanly, in dependency order: the deadline job (it issues
    /// commands), then the sagas (they issue commands), then the projections. Each subscription
    /// commits the batch it is handling with its checkpoint and releases its lock, so another
    /// process takes over at once and nothing is handled twice.
    pub async fn stop_background(&self) {
        self.background.stop().await;
        futures::future::join_all(self.sagas.iter().map(SubscriptionHandle::stop)).await;
        futures::future::join_all(
            self.projections
                .handles()
                .iter()
                .map(SubscriptionHandle::stop),
        )
        .await;
    }
}
