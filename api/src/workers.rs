//! The background work of a server, beside its HTTP workers: the projections, the order and
//! booking sagas, the deadline job, the wake-up relays, the periodic verify and the
//! integration-event publisher, and the outbound webhooks' outbox and dispatcher.
//!
//! Every task runs under one shutdown primitive, tokio-util's [`CancellationToken`] and
//! [`TaskTracker`] (as mini-redis threads its `Shutdown`), in three stages stopped in
//! dependency order: what issues commands on its own (the deadline job, the verify, the
//! relays), then the sagas (they issue commands too), then the projections, so the last
//! events the others append are still projected and every checkpoint ends at the head. Each
//! subscription finishes its batch, commits and releases its lock, so another instance takes
//! over at once. [`Workers::abort`] is a crash, as far as the work can tell.

use commands::CommandBus;
use commands::deadlines;
use commands::payment_gateway::PaymentGateway;
use commands::sagas::{BookingSaga, Flow, OrderSaga, SagaRunner};
use feed::{FeedSignal, Subscription, SubscriptionHandle, SubscriptionOptions, relay};
use projections::catalog::ReadCaches;
use projections::catalog::{self, Running};
use projections::wait;
use sqlx::PgPool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checkpointer;
use crate::configuration::Settings;
use crate::integration::Publisher;
use crate::outbound::{deliver, outbox::Outbox};
use crate::verifier::{self, Verifications};

/// One group of tasks stopped together.
#[derive(Default)]
struct Stage {
    stop: CancellationToken,
    tracker: TaskTracker,
    /// Tasks that are not subscriptions (those abort through their handles).
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Stage {
    fn spawn<F>(&self, work: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = self.tracker.spawn(work(self.stop.clone()));
        self.hold(task.abort_handle());
    }

    fn hold(&self, task: AbortHandle) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn abort(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            task.abort();
        }
    }
}

/// A server's background work.
pub struct Workers {
    /// The deadline job, the periodic verify and the relays.
    own: Stage,
    sagas: Stage,
    projections: Stage,
    running: Running,
    /// The sagas' runners and the integration-event publisher's (aborted with the rest).
    saga_runners: Vec<SubscriptionHandle>,
    signal: FeedSignal,
}

impl Workers {
    /// Starts everything `settings` asks for on `pool`: the sagas pay through `gateway` (none
    /// with sagas off); the periodic verify records into `verifications`.
    pub fn start(
        settings: &Settings,
        pool: &PgPool,
        bus: &CommandBus,
        gateway: Option<Arc<dyn PaymentGateway>>,
        verifications: &Verifications,
        read_caches: &ReadCaches,
    ) -> Self {
        let (own, sagas, projections) = (Stage::default(), Stage::default(), Stage::default());
        let signal = bus.feed_signal();
        let options = SubscriptionOptions {
            poll_interval: settings.feed_poll_interval,
            ..SubscriptionOptions::default()
        };
        let running = catalog::start_under(
            pool,
            signal,
            &options,
            read_caches,
            &projections.stop,
            &projections.tracker,
        );
        let saga_options = saga_options(&options, settings.gateway_resilience.cool_down);
        let mut saga_runners = match gateway {
            Some(gateway) => vec![
                saga::<OrderSaga>(bus, pool, Arc::clone(&gateway), &saga_options, &sagas),
                saga::<BookingSaga>(bus, pool, gateway, &saga_options, &sagas),
            ],
            None => Vec::new(),
        };
        if let Some(nats) = &settings.nats {
            // With the projections: it issues no commands, and stopping it last publishes the
            // events the sagas appended while they stopped.
            saga_runners.push(
                Subscription::new(
                    Arc::new(Publisher::new(nats.clone())),
                    pool.clone(),
                    signal.clone(),
                    options.clone(),
                )
                .spawn_under(&projections.stop, &projections.tracker),
            );
        }
        if let Some(webhooks) = settings.webhooks {
            // The outbox only inserts rows: with the projections, like the publisher, so it
            // queues what the sagas appended while they stopped. The dispatcher sends, and
            // stops first (an attempt it cuts short is sent again by the next one).
            let queued = Arc::new(tokio::sync::Notify::new());
            saga_runners.push(
                Subscription::new(
                    Arc::new(Outbox::new(Arc::clone(&queued))),
                    pool.clone(),
                    signal.clone(),
                    options.clone(),
                )
                .spawn_under(&projections.stop, &projections.tracker),
            );
            let pool = pool.clone();
            own.spawn(|stop| deliver::run(pool, webhooks, queued, stop));
        }
        let (job_bus, interval) = (bus.clone(), settings.deadline_interval);
        own.spawn(|stop| deadlines::run_until_cancelled(job_bus, interval, stop));
        if let Some(every) = settings.verify_interval {
            let (pool, verifications) = (pool.clone(), verifications.clone());
            own.spawn(|stop| verifier::run(pool, every, verifications, stop));
        }
        if let Some(audit) = &settings.audit {
            let (pool, key, every) = (pool.clone(), audit.key.clone(), audit.checkpoint_interval);
            own.spawn(|stop| checkpointer::run(pool, key, every, stop));
        }
        for task in relay::spawn(pool.clone(), signal.clone(), &own.stop, &own.tracker) {
            own.hold(task);
        }
        Self {
            own,
            sagas,
            projections,
            running,
            saga_runners,
            signal: signal.clone(),
        }
    }

    /// No background work at all (`reserva serve --role api`): readers wait on the stored
    /// checkpoints, which the instances running the work move.
    pub fn none(bus: &CommandBus) -> Self {
        Self {
            own: Stage::default(),
            sagas: Stage::default(),
            projections: Stage::default(),
            running: Running::default(),
            saga_runners: Vec::new(),
            signal: bus.feed_signal().clone(),
        }
    }

    /// This process's runner of projection `name`, when it runs one: what it has committed
    /// and the signal that nudges it.
    pub fn local(&self, name: &str) -> Option<wait::Local> {
        self.running.get(name).map(|h| wait::Local {
            progress: h.progress.clone(),
            signal: self.signal.clone(),
        })
    }

    /// Stops everything cleanly, stage after stage, and returns once all of it has ended.
    pub async fn stop(&self) {
        self.own.stop().await;
        self.sagas.stop().await;
        self.projections.stop().await;
    }

    /// Stops everything at once, mid-batch: a crash, as far as the work can tell (open
    /// transactions roll back with their connections).
    pub fn abort(&self) {
        self.own.abort();
        for runner in self.saga_runners.iter().chain(self.running.handles()) {
            runner.abort();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The sagas' tuning: a failing step is retried for at least three of the payment breaker's
/// cool-downs before it is parked.
///
/// A saga step that fails on the provider (a refund, above all: money is at stake) fails its
/// event, which the feed retries with back-off and then parks for an operator. With the
/// projections' schedule (5 tries within about 2 s) a refund that met an open breaker (30 s by
/// default) was parked while the provider was merely resting, and the money was kept until an
/// operator retried it; the load driver's chaos run found 124 such payments. Retried past the
/// cool-down, the refund goes through once the breaker lets calls through again. Other
/// aggregates' events never wait for it (a retrying event holds back only its own
/// aggregate's later events).
fn saga_options(options: &SubscriptionOptions, cool_down: Duration) -> SubscriptionOptions {
    let mut saga = options.clone();
    saga.retry_max_delay = saga.retry_max_delay.max(cool_down);
    let window = cool_down.saturating_mul(3);
    let (mut waited, mut tries) = (Duration::ZERO, 1_u32);
    // The back-off's floor (its jitter only adds): base · 2^(n-1), capped.
    while waited < window && tries < 64 {
        let step = saga
            .retry_base_delay
            .saturating_mul(1 << (tries - 1).min(20))
            .min(saga.retry_max_delay);
        waited += step;
        tries += 1;
    }
    saga.max_attempts = saga.max_attempts.max(tries);
    saga
}

/// Starts the saga of `F` (in standby while another process runs it).
fn saga<F: Flow>(
    bus: &CommandBus,
    pool: &PgPool,
    gateway: Arc<dyn PaymentGateway>,
    options: &SubscriptionOptions,
    stage: &Stage,
) -> SubscriptionHandle {
    let runner = SagaRunner::<F>::new(bus.clone(), gateway);
    Subscription::new(
        Arc::new(runner),
        pool.clone(),
        bus.feed_signal().clone(),
        options.clone(),
    )
    .spawn_under(&stage.stop, &stage.tracker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saga_step_is_retried_past_three_breaker_cool_downs_before_it_is_parked() {
        let defaults = SubscriptionOptions::default();
        for cool_down in [
            Duration::from_millis(200),
            Duration::from_secs(2),
            Duration::from_secs(30),
        ] {
            let saga = saga_options(&defaults, cool_down);
            let backoff = saga.backoff();
            // The floor of the waits before the last try (jitter only adds to each).
            let waited: Duration = (1..saga.max_attempts)
                .map(|n| {
                    saga.retry_base_delay
                        .saturating_mul(1 << (n - 1).min(20))
                        .min(saga.retry_max_delay)
                })
                .sum();
            assert!(waited >= cool_down * 3, "{cool_down:?}: {waited:?}");
            assert!(backoff.delay(64) <= saga.retry_max_delay * 2);
            assert!(saga.max_attempts >= defaults.max_attempts);
        }
    }
}
