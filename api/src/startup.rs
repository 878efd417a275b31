//! Builds a server on a pool it is given (tests pass a per-test database): the HTTP server and,
//! beside it, the background work ([`crate::workers`]), run and stopped together.

use actix_web::dev::Server;
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, web};
use commands::payment_gateway::{PaymentGateway, Resilient, SimulatedGateway, StripeGateway};
use commands::{CommandBus, SnapshotPolicy};
use projections::catalog::ReadCaches;
use sqlx::PgPool;
use std::net::TcpListener;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::auth::Authenticator;
use crate::configuration::{GatewaySettings, Settings};
use crate::rebuilds::Rebuilds;
use crate::state::{AppState, Instance, Ttl};
use crate::verifier::Verifications;
use crate::workers::Workers;
use crate::{configuration, correlation, edge, metrics, rate_limit, routes, telemetry};

/// A bound, not yet running, server: the HTTP server and its background work.
pub struct Application {
    port: u16,
    server: Server,
    bus: CommandBus,
    workers: Arc<Workers>,
    shutdown: Shutdown,
}

/// Asks a running [`Application`] to shut down as on SIGTERM, from another task.
#[derive(Clone)]
pub struct Shutdown {
    /// Cancelled when a graceful stop is asked for (a signal or [`Shutdown::graceful`]).
    requested: CancellationToken,
    /// Cancelled when [`Application::run_until_stopped`] is done.
    stopped: CancellationToken,
}

impl Shutdown {
    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout), stops
    /// the background work cleanly, and returns once all of that is done (at once if the
    /// server is not running any more).
    pub async fn graceful(&self) {
        self.requested.cancel();
        self.stopped.cancelled().await;
    }
}

impl Application {
    /// Binds `settings.http_host:http_port` (port 0 picks a free one), starts the background
    /// work and wires the routes.
    ///
    /// # Errors
    /// The address cannot be bound, or the Stripe client cannot be built.
    pub fn build(settings: &Settings, pool: PgPool) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.http_host.as_str(), settings.http_port))?;
        let port = listener.local_addr()?.port();
        let bus = CommandBus::new(pool.clone()).with_snapshots(SnapshotPolicy {
            every: settings.snapshot_every,
        });
        let gateway = if settings.sagas && settings.role.runs_workers() {
            Some(payment_gateway(settings, port)?)
        } else {
            None
        };
        let verifications = Verifications::default();
        // A replica's rows lag the writer's, so a cache filled from it could keep an old row.
        let read_caches = if settings.read_url.is_none() && settings.role.runs_workers() {
            ReadCaches::new(settings.read_cache_rows)
        } else {
            ReadCaches::default()
        };
        let workers = Arc::new(if settings.role.runs_workers() {
            Workers::start(settings, &pool, &bus, gateway, &verifications, &read_caches)
        } else {
            Workers::none(&bus)
        });
        let shutdown = Shutdown {
            requested: CancellationToken::new(),
            stopped: CancellationToken::new(),
        };
        let read_pool = match &settings.read_url {
            Some(url) => configuration::connect_read_pool(url, settings.db_max_connections)
                .map_err(std::io::Error::other)?,
            None => pool.clone(),
        };
        let tail = feed::Tail::start(
            pool.clone(),
            bus.feed_signal(),
            settings.live_buffer,
            shutdown.requested.clone(),
        );
        let state = web::Data::new(AppState {
            tail,
            bus: bus.clone(),
            pool,
            read_pool,
            reads_from_replica: settings.read_url.is_some(),
            read_caches,
            workers: Arc::clone(&workers),
            rebuilds: Rebuilds::default(),
            verifications,
            read_wait: settings.read_wait,
            ttl: Ttl {
                order: settings.order_ttl,
                booking: settings.booking_ttl,
            },
            webhook_secret: settings.stripe_webhook_secret.clone(),
            webhook_wait: settings.webhook_wait,
            ready_max_lag_events: settings.ready_max_lag_events,
            metrics: metrics::handle(),
            instance: Instance {
                role: settings.role.as_str(),
                rate_limits: match (&settings.rate_limits, &settings.shared_rate_limits) {
                    (None, _) => "off",
                    (Some(_), None) => "per_process",
                    (Some(_), Some(_)) => "shared",
                },
                integration_events: settings.nats.is_some() && settings.role.runs_workers(),
            },
        });
        let server = http_server(settings, listener, state, &shutdown)?;
        Ok(Self {
            port,
            server,
            bus,
            workers,
            shutdown,
        })
    }

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
    /// finish (`http_shutdown_timeout`), then stops the background work cleanly (each
    /// subscription commits its batch and releases its lock). Stopped any other way (the
    /// server handle), the background work is aborted.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if self.shutdown.requested.is_cancelled() {
            self.workers.stop().await;
            tracing::info!("stopped cleanly");
        } else {
            self.workers.abort();
        }
        drop(self.workers);
        self.shutdown.stopped.cancel();
        result
    }
}

/// The HTTP server over `state`, stopping on a signal or `shutdown`'s request.
fn http_server(
    settings: &Settings,
    listener: TcpListener,
    state: web::Data<AppState>,
    shutdown: &Shutdown,
) -> std::io::Result<Server> {
    let windows = match &settings.shared_rate_limits {
        Some(shared) => rate_limit::Windows::shared(&shared.url, &shared.prefix)
            .map_err(std::io::Error::other)?,
        None => rate_limit::Windows::default(),
    };
    let guards = routes::Guards {
        windows,
        limits: settings.rate_limits,
        serves_api: settings.role.serves_api(),
    };
    let authenticator =
        web::Data::new(Authenticator::new(settings.auth.as_ref()).map_err(std::io::Error::other)?);
    let edge_settings = web::Data::new(settings.edge.clone());
    let server = HttpServer::new(move || {
        // The last `.wrap` runs first. Auth, budgets and idempotency keys wrap the guarded
        // scopes of the route table (`routes::table`); the correlation middleware wraps
        // everything so their problems carry the correlation id. Outside all of it the edge
        // (`edge`): security headers on every answer, CORS (preflights are answered there),
        // then compression.
        App::new()
            .app_data(authenticator.clone())
            .app_data(edge_settings.clone())
            .wrap(from_fn(correlation::middleware))
            .wrap(from_fn(telemetry::traceparent_header))
            .wrap(TracingLogger::default())
            .wrap(from_fn(metrics::track_http))
            .wrap(from_fn(edge::headers::keep_small_plain))
            .wrap(Compress::default())
            .wrap(edge::cors::middleware(&edge_settings))
            .wrap(from_fn(edge::cors::refuse_unlisted_preflights))
            .wrap(from_fn(edge::headers::secure))
            .app_data(state.clone())
            .configure(|cfg| routes::configure(cfg, &guards))
            .default_service(web::to(routes::not_found))
    })
    .workers(settings.http_workers.max(1))
    .shutdown_timeout(settings.http_shutdown_timeout.as_secs())
    .shutdown_signal(stop_signal(shutdown.requested.clone()))
    .listen(listener)?
    .run();
    Ok(server)
}

/// The provider the sagas pay through, behind timeouts, retries and a breaker. The simulated
/// one delivers its webhooks to this very server.
fn payment_gateway(settings: &Settings, port: u16) -> std::io::Result<Arc<dyn PaymentGateway>> {
    let policy = settings.gateway_resilience;
    Ok(match &settings.gateway {
        GatewaySettings::Simulated { delay } => {
            let host = match settings.http_host.as_str() {
                "0.0.0.0" | "::" => "127.0.0.1",
                host => host,
            };
            let url = format!("http://{host}:{port}/webhooks/stripe");
            let simulated =
                SimulatedGateway::new(url, settings.stripe_webhook_secret.clone(), *delay)
                    .with_chaos(settings.gateway_chaos);
            if settings.gateway_chaos.is_on() {
                tracing::warn!(chaos = ?settings.gateway_chaos, "the simulated gateway fails a share of calls on purpose");
            }
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

/// Resolves on SIGTERM, SIGINT or a [`Shutdown::graceful`] request, marking the stop graceful
/// (`requested`). Replaces actix's own signal handling, which would treat SIGINT as a forced
/// stop.
async fn stop_signal(requested: CancellationToken) {
    tokio::select! {
        () = requested.cancelled() => {}
        () = os_signal() => {}
    }
    tracing::info!("shutting down: draining requests, then stopping background work");
    requested.cancel();
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
