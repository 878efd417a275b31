//! [`TestApp`]: one running service on its own database; starting, restarting, stopping it.

use crate::database::{TestDatabase, fresh_database_on, server};
use api::configuration::{AuthSettings, GatewaySettings, Settings};
use api::startup::Application;
use commands::CommandBus;
use sqlx::PgPool;
use std::sync::LazyLock;

/// Spans always get W3C ids (the OpenTelemetry layer, exporting nothing), so trace context
/// propagates in every test; logs are printed only with `TEST_LOG`. Never dropped: the
/// provider lives as long as the test process.
static TRACING: LazyLock<api::telemetry::TelemetryGuard> = LazyLock::new(|| {
    api::telemetry::install(
        std::env::var("TEST_LOG").is_ok(),
        api::telemetry::Export::Off,
    )
});

/// One running service on its own database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The test database (migrated).
    pub pool: PgPool,
    /// The server's own command bus, for driving the write side directly (its commits wake
    /// the server's projections at once).
    pub bus: CommandBus,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The settings the server was built with (for running CLI subcommands against it).
    pub settings: Settings,
    server: actix_web::dev::ServerHandle,
    shutdown: api::startup::Shutdown,
    /// Shared with a restarted server on the same database; dropped with the last one.
    _database: std::sync::Arc<TestDatabase>,
}

impl Drop for TestApp {
    /// Stops the server, and with it the projections and background tasks it runs, before
    /// the database goes away.
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

/// The Stripe endpoint secret of every test server.
pub const WEBHOOK_SECRET: &str = "whsec_reserva_test";

/// Starts the service on a fresh, migrated database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A service that runs no sagas: for tests that drive the write side by hand and must not
/// have a saga move their orders and bookings along.
pub async fn spawn_app_without_sagas() -> TestApp {
    spawn_app_with(|settings| settings.sagas = false).await
}

/// Like [`spawn_app`], after `configure` adjusts the settings (short TTLs, a fake Stripe…).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(server().await, configure).await
}

/// Like [`spawn_app_with`], on a database of `server` (e.g. [`crate::counting_server`]).
pub async fn spawn_app_on(
    server: sqlx::postgres::PgConnectOptions,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_on_database(server, |settings, _| configure(settings)).await
}

/// Like [`spawn_app_on`], with the new database at hand while the settings are adjusted (a
/// replica's URL of it, say).
pub async fn spawn_app_on_database(
    server: sqlx::postgres::PgConnectOptions,
    configure: impl FnOnce(&mut Settings, &TestDatabase),
) -> TestApp {
    LazyLock::force(&TRACING);
    let database = fresh_database_on(server, 16).await;
    let pool = database.pool.clone();
    commands::MIGRATOR.run(&pool).await.expect("migrate");
    let mut settings = Settings {
        database_url: None,
        http_host: "127.0.0.1".to_owned(),
        http_port: 0,
        http_workers: 1,
        db_max_connections: 16,
        data_dir: ".reserva".into(),
        read_wait: std::time::Duration::from_secs(10),
        read_cache_rows: 10_000,
        webhook_wait: std::time::Duration::from_secs(2),
        stripe_webhook_secret: WEBHOOK_SECRET.to_owned(),
        gateway: GatewaySettings::Simulated {
            delay: std::time::Duration::ZERO,
        },
        gateway_resilience: commands::payment_gateway::ResiliencePolicy::default(),
        gateway_chaos: commands::payment_gateway::Chaos::OFF,
        order_ttl: std::time::Duration::from_secs(900),
        booking_ttl: std::time::Duration::from_secs(1800),
        sagas: true,
        // Tests step deadlines themselves (`run_deadlines_once`); the job still runs.
        deadline_interval: std::time::Duration::from_secs(5),
        feed_poll_interval: std::time::Duration::from_millis(250),
        // Load tests send hundreds of requests from one address; rate-limit tests turn it on.
        rate_limits: None,
        auth: None,
        http_shutdown_timeout: std::time::Duration::from_secs(30),
        ready_max_lag_events: 10_000,
        verify_interval: None,
        audit: None,
        snapshot_every: 500,
        nats: None,
        // Off unless a test turns it on: another subscription would change what other tests
        // count (statements, subscriptions).
        webhooks: None,
        role: api::configuration::InstanceRole::All,
        shared_rate_limits: None,
        read_url: None,
        edge: api::edge::EdgeSettings::default(),
        live_buffer: 64,
    };
    configure(&mut settings, &database);
    start(settings, std::sync::Arc::new(database)).await
}

/// The HS256 secret of servers started by [`spawn_app_with_auth`].
pub const JWT_SECRET: &str = "reserva-test-jwt-secret-0123456789abcdef";

/// Like [`spawn_app`] with bearer-token auth on (secret [`JWT_SECRET`]); mint tokens with
/// [`TestApp::token`].
pub async fn spawn_app_with_auth() -> TestApp {
    spawn_app_with(|settings| {
        settings.auth = Some(AuthSettings::new(JWT_SECRET).expect("a long enough secret"));
    })
    .await
}

/// Builds and runs a server on `database` (already migrated).
async fn start(settings: Settings, database: std::sync::Arc<TestDatabase>) -> TestApp {
    let pool = database.pool.clone();
    start_on(settings, database, pool).await
}

/// Builds and runs a server on `database` through `pool`.
async fn start_on(
    settings: Settings,
    database: std::sync::Arc<TestDatabase>,
    pool: sqlx::PgPool,
) -> TestApp {
    let app = Application::build(&settings, pool.clone()).expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let bus = app.bus().clone();
    let server = app.handle();
    let shutdown = app.shutdown();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        bus,
        pool,
        client: reqwest::Client::new(),
        settings,
        server,
        shutdown,
        _database: database,
    }
}

impl TestApp {
    /// Stops this server (a crash, as far as its background work is concerned: subscriptions
    /// are aborted mid-batch and their transactions roll back) and starts a new one on the same
    /// database with the same settings, on a new port.
    pub async fn restart(&self) -> TestApp {
        self.server.stop(false).await;
        start(
            self.settings.clone(),
            std::sync::Arc::clone(&self._database),
        )
        .await
    }
}

impl TestApp {
    /// Starts a second server on this one's database with settings adjusted by `configure`
    /// (both keep running): another instance, as a deployment of several would have, with a
    /// pool of its own (its runners' connections must not starve the first one's).
    pub async fn another_instance(&self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(settings.db_max_connections)
            .connect_with(self.pool.connect_options().as_ref().clone())
            .await
            .expect("another instance's pool");
        start_on(settings, std::sync::Arc::clone(&self._database), pool).await
    }
}

impl TestApp {
    /// Shuts this server down as SIGTERM would (requests drained, background work stopped
    /// after its batch) and starts a new one on the same database with the same settings, on
    /// a new port.
    pub async fn restart_gracefully(&self) -> TestApp {
        self.shutdown.graceful().await;
        start(
            self.settings.clone(),
            std::sync::Arc::clone(&self._database),
        )
        .await
    }

    /// Shuts this server down as SIGTERM would (drain requests, then stop background work
    /// cleanly); the future can be spawned and awaited later while requests are in flight.
    pub fn shutdown_gracefully(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shutdown = self.shutdown.clone();
        async move { shutdown.graceful().await }
    }
}
