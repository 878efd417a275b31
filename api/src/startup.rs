//! Builds the HTTP server on a pool it is given, so tests can pass a per-test database.

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use commands::CommandBus;
use sqlx::PgPool;
use std::net::TcpListener;
use tracing_actix_web::TracingLogger;

use crate::configuration::Settings;
use crate::state::AppState;
use crate::{correlation, routes};

/// A bound, not yet running, HTTP server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `settings.http_host:http_port` (port 0 picks a free one) and wires the routes.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn build(settings: &Settings, pool: PgPool) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.http_host.as_str(), settings.http_port))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            bus: CommandBus::new(pool),
        });
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
        Ok(Self { port, server })
    }

    /// The bound port.
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
