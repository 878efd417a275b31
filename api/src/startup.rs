//! Builds the HTTP server on a pool it is given, so tests can pass a per-test database.

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use commands::CommandBus;
use commands::deadlines;
use commands::feed::relay;
use commands::feed::subscription::{Subscription, SubscriptionHandle, SubscriptionOptions};
use commands::payment_gateway::{
    PaymentGateway, ResiliencePolicy, Resilient, SimulatedGateway, StripeGateway,
};
use commands::sagas::{BookingSaga, Flow, OrderSaga, SagaRunner};
use projections::{catalog, status};
use sqlx::PgPool;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tracing_actix_web::TracingLogger;

use crate::auth::{self, Authenticator};
use crate::configuration::{GatewaySettings, Settings};
use crate::rebuilds::Rebuilds;
use crate::state::{AppState, Background, Ttl};
use crate::{correlation, idempotency, metrics, rate_limit, routes, telemetry};

/// A bound, not yet running, HTTP server.
pub struct Application {
    port: u16,
    server: Server,
    bus: CommandBus,
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
        background
            .0
            .push(spawn_deadlines(bus.clone(), settings.deadline_interval));
        background.0.extend(relay::spawn(pool.clone(), signal));
        background
            .0
            .push(status::spawn_sampler(pool.clone(), Duration::from_secs(5)));
        let state = web::Data::new(AppState {
            bus,
            pool,
            projections,
            sagas,
            rebuilds: Rebuilds::default(),
            read_wait: settings.read_wait,
            ttl: Ttl {
                order: settings.order_ttl,
                booking: settings.booking_ttl,
            },
            webhook_secret: settings.stripe_webhook_secret.clone(),
            metrics: metrics::handle(),
            background,
        });
        let bus = state.bus.clone();
        let limits = settings.rate_limits;
        let windows = rate_limit::Windows::default();
        let authenticator = web::Data::new(Authenticator::new(settings.auth.as_ref()));
        let server = HttpServer::new(move || {
            // The last `.wrap` runs first. Idempotency and the limiters read the `Caller`, so
            // the auth middleware must be wrapped after them; a refused request must not
            // claim an idempotency key, so the limiters wrap it; the correlation middleware
            // wraps all three so their problems carry the correlation id.
            App::new()
                .wrap(from_fn(idempotency::middleware))
                .wrap(rate_limit::per_route(&windows, limits))
                .wrap(rate_limit::overall(&windows, limits))
                .app_data(authenticator.clone())
                .wrap(from_fn(auth::middleware))
                .wrap(from_fn(correlation::middleware))
                .wrap(from_fn(telemetry::traceparent_header))
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.http_workers.max(1))
        .listen(listener)?
        .run();
        Ok(Self { port, server, bus })
    }

    /// The bound port.
    /// The server's command bus: commands sent through it wake the server's projections at
    /// once (tests use it to write around HTTP).
    pub fn bus(&self) -> &CommandBus {
        &self.bus
    }

    /// Stops the server from another task.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM drain in-flight requests first).
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
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

/// Starts the deadline job in a task that keeps it alive until the server's state is dropped.
fn spawn_deadlines(bus: CommandBus, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match deadlines::start(bus, interval).await {
            Ok(job) => {
                std::future::pending::<()>().await;
                drop(job);
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
