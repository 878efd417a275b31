//! Builds the HTTP server on a pool it is given, so tests can pass a per-test database.

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use commands::CommandBus;
use commands::deadlines;
use commands::payment_gateway::{
    PaymentGateway, ResiliencePolicy, Resilient, SimulatedGateway, StripeGateway,
};
use commands::sagas::{BookingSaga, Flow, OrderSaga, SagaRunner};
use feed::relay;
use feed::{Subscription, SubscriptionHandle, SubscriptionOptions};
use projections::catalog;
use sqlx::PgPool;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tracing_actix_web::TracingLogger;

use crate::auth::Authenticator;
use crate::configuration::{GatewaySettings, Settings};
use crate::rebuilds::Rebuilds;
use crate::state::{AppState, Background, Ttl};
use crate::verifier::Verifications;
use crate::{correlation, metrics, rate_limit, routes, telemetry, verifier};

/// A bound, not yet running, HTTP server.
pub struct Application {
    port: u16,
    server: Server,
    bus: CommandBus,
    /// Kept so the background work outlives the workers until it is stopped cleanly.
    state: web::Data<AppState>,
    shutdown: Shutdown,
    /// Set once a graceful stop was asked for (a signal or [`Shutdown::graceful`]).
    graceful: Arc<AtomicBool>,
    /// Turned `true` when [`Application::run_until_stopped`] is done.
    stopped: watch::Sender<bool>,
}

/// Asks a running [`Application`] to shut down as on SIGTERM, from another task.
#[derive(Clone)]
pub struct Shutdown {
    requested: Arc<watch::Sender<bool>>,
    stopped: watch::Receiver<bool>,
}

impl Shutdown {
    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout), stops
    /// the background work cleanly, and returns once all of that is done (at once if the
    /// server is not running any more).
    pub async fn graceful(&self) {
        self.requested.send_replace(true);
        let mut stopped = self.stopped.clone();
        // An error means the server's task is gone: nothing left to wait for.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

impl Application {
    /// Binds `settings.http_host:http_port` (port 0 picks a free one) and wires the routes.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn build(settings: &Settings, pool: PgPool) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.http_host.as_str(), settings.http_port))?;
        let port = listener.local_addr()?.port();
        let bus = CommandBus::new(pool.clone());
        let signal = bus.feed_signal().clone();
        let projections = catalog::start(&pool, &signal, &SubscriptionOptions::default());
        let sagas = if settings.sagas {
            let gateway = payment_gateway(settings, port)?;
            vec![
                saga::<OrderSaga>(&bus, &pool, Arc::clone(&gateway)),
                saga::<BookingSaga>(&bus, &pool, gateway),
            ]
        } else {
            Vec::new()
        };
        let mut background = Background::default();
        let (deadline_bus, interval) = (bus.clone(), settings.deadline_interval);
        background.spawn_stoppable(|stop| spawn_deadlines(deadline_bus, interval, stop));
        let verifications = Verifications::default();
        if let Some(every) = settings.verify_interval {
            let (pool, verifications) = (pool.clone(), verifications.clone());
            background.spawn_stoppable(|stop| verifier::spawn(pool, every, verifications, stop));
        }
        for task in relay::spawn(pool.clone(), signal) {
            background.push(task);
        }
        let state = web::Data::new(AppState {
            bus,
            pool,
            projections,
            sagas,
            rebuilds: Rebuilds::default(),
            verifications,
            read_wait: settings.read_wait,
            ttl: Ttl {
                order: settings.order_ttl,
                booking: settings.booking_ttl,
            },
            webhook_secret: settings.stripe_webhook_secret.clone(),
            ready_max_lag_events: settings.ready_max_lag_events,
            metrics: metrics::handle(),
            background,
        });
        let bus = state.bus.clone();
        let guards = routes::Guards {
            windows: rate_limit::Windows::default(),
            limits: settings.rate_limits,
        };
        let authenticator = web::Data::new(Authenticator::new(settings.auth.as_ref()));
        let app_state = state.clone();
        let (requested, stopped) = (watch::Sender::new(false), watch::Sender::new(false));
        let graceful = Arc::new(AtomicBool::new(false));
        let shutdown = Shutdown {
            requested: Arc::new(requested),
            stopped: stopped.subscribe(),
        };
        let server = HttpServer::new(move || {
            // The last `.wrap` runs first. Auth, budgets and idempotency keys wrap the guarded
            // scopes of the route table (`routes::table`); the correlation middleware wraps
            // everything so their problems carry the correlation id.
            App::new()
                .app_data(authenticator.clone())
                .wrap(from_fn(correlation::middleware))
                .wrap(from_fn(telemetry::traceparent_header))
                .wrap(TracingLogger::default())
                .wrap(from_fn(metrics::track_http))
                .app_data(app_state.clone())
                .configure(|cfg| routes::configure(cfg, &guards))
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.http_workers.max(1))
        .shutdown_timeout(settings.http_shutdown_timeout.as_secs())
        .shutdown_signal(stop_signal(
            shutdown.requested.subscribe(),
            Arc::clone(&graceful),
        ))
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            bus,
            state,
            shutdown,
            graceful,
            stopped,
        })
    }

    /// The bound port.
    /// The server's command bus: commands sent through it wake the server's projections at
    /// once (tests use it to write around HTTP).
    pub fn bus(&self) -> &CommandBus {
        &self.bus
    }

    /// Stops the server from another task. `stop(true)` drains requests but, like
    /// `stop(false)`, aborts the background work (a crash, as far as it can tell); use
    /// [`Application::shutdown`] for a clean stop.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Shuts the whole service down cleanly from another task, as SIGTERM does.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped.
    ///
    /// On SIGTERM, SIGINT or [`Shutdown::graceful`]: stops accepting, lets in-flight requests
    /// finish (`http_shutdown_timeout`), then stops the subscriptions, sagas and deadline job
    /// cleanly (each commits its batch and releases its lock). Stopped any other way (the
    /// server handle), the background work is aborted with the state.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if self.graceful.load(Ordering::SeqCst) {
            self.state.stop_background().await;
            tracing::info!("stopped cleanly");
        }
        drop(self.state);
        self.stopped.send_replace(true);
        result
    }
}

/// The provider the sagas pay through, behind timeouts, retries and a breaker. The simulated
/// one delivers its webhooks to this very server.
fn payment_gateway(settings: &Settings, port: u16) -> std::io::Result<Arc<dyn PaymentGateway>> {
    let policy = ResiliencePolicy::default();
    Ok(match &settings.gateway {
        GatewaySettings::Simulated { delay } => {
            let host = match settings.http_host.as_str() {
                "0.0.0.0" | "::" => "127.0.0.1",
                host => host,
            };
            let url = format!("http://{host}:{port}/webhooks/stripe");
            let simulated =
                SimulatedGateway::new(url, settings.stripe_webhook_secret.clone(), *delay);
            Arc::new(Resilient::new(simulated, policy))
        }
        GatewaySettings::Stripe {
            secret_key,
            api_base,
        } => {
            let stripe =
                StripeGateway::new(secret_key, api_base.as_deref(), policy.attempt_timeout)
                    .map_err(std::io::Error::other)?;
            Arc::new(Resilient::new(stripe, policy))
        }
    })
}

/// Resolves on SIGTERM, SIGINT or a [`Shutdown::graceful`] request, marking the stop graceful.
/// Replaces actix's own signal handling, which would treat SIGINT as a forced stop.
async fn stop_signal(mut requested: watch::Receiver<bool>, graceful: Arc<AtomicBool>) {
    let asked = async {
        // Every `Shutdown` dropped without asking: only a signal can stop us.
        if requested.wait_for(|asked| *asked).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = asked => {}
        () = os_signal() => {}
    }
    tracing::info!("shutting down: draining requests, then stopping background work");
    graceful.store(true, Ordering::SeqCst);
}

/// SIGTERM (orchestrators) or SIGINT (Ctrl-C). Pending forever where signals cannot be
/// listened to.
async fn os_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Starts the deadline job in a task that keeps it until `stop` turns `true` (then shuts it
/// down, letting a run in progress finish its batch) or the task is aborted.
fn spawn_deadlines(
    bus: CommandBus,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match deadlines::start(bus, interval).await {
            Ok(mut job) => {
                let _ = stop.wait_for(|stop| *stop).await;
                if let Err(error) = job.shutdown().await {
                    tracing::warn!(%error, "the deadline job did not stop cleanly");
                }
            }
            Err(error) => tracing::error!(%error, "the deadline job did not start"),
        }
    })
}

/// Starts the saga of `F` (in standby while another process runs it).
fn saga<F: Flow>(
    bus: &CommandBus,
    pool: &PgPool,
    gateway: Arc<dyn PaymentGateway>,
) -> SubscriptionHandle {
    let runner = SagaRunner::<F>::new(bus.clone(), gateway);
    Subscription::new(
        Arc::new(runner),
        pool.clone(),
        bus.feed_signal().clone(),
        SubscriptionOptions::default(),
    )
    .spawn()
}
