//! Builds the HTTP server on a pool it is given, so tests can pass a per-test database.

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use commands::CommandBus;
use commands::feed::relay;
use commands::feed::subscription::SubscriptionOptions;
use projections::{catalog, status};
use sqlx::PgPool;
use std::net::TcpListener;
use std::time::Duration;
use tracing_actix_web::TracingLogger;

use crate::configuration::Settings;
use crate::rebuilds::Rebuilds;
use crate::state::{AppState, Background, Ttl};
use crate::{correlation, metrics, routes};

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
        let mut background = Background::default();
        background.0.extend(relay::spawn(pool.clone(), signal));
        background
            .0
            .push(status::spawn_sampler(pool.clone(), Duration::from_secs(5)));
        let state = web::Data::new(AppState {
            bus,
            pool,
            projections,
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
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(correlation::middleware))
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
