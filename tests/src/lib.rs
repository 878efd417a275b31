//! Black-box test harness: a real PostgreSQL (one fresh database per test) and the real HTTP
//! server on a free port.
//!
//! With `DATABASE_URL` set, tests create their databases on that server; without it a private
//! cluster is started once per test process under `.reserva/test-cluster` and stopped when the
//! process exits. `TEST_LOG=1` prints the service's logs.
//!
//! [`fake_stripe`]: a stateful Stripe stand-in for the real async-stripe client.

use api::auth::Role;
use api::configuration::{AuthSettings, GatewaySettings, Settings};
use api::postgres::{ClusterOptions, PrivateCluster};
use api::startup::Application;
use commands::CommandBus;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::OnceCell;

pub mod fake_stripe;

pub use fake_stripe::FakeStripe;

/// Spans always get W3C ids (the OpenTelemetry layer, exporting nothing), so trace context
/// propagates in every test; logs are printed only with `TEST_LOG`. Never dropped: the
/// provider lives as long as the test process.
static TRACING: LazyLock<api::telemetry::TelemetryGuard> = LazyLock::new(|| {
    api::telemetry::install(
        std::env::var("TEST_LOG").is_ok(),
        api::telemetry::Export::Off,
    )
});

static SERVER: OnceCell<PgConnectOptions> = OnceCell::const_new();

/// Connection options of the server tests create databases on.
pub async fn server() -> PgConnectOptions {
    SERVER
        .get_or_init(|| async {
            let url = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../.reserva/test-cluster");
                    let options = ClusterOptions {
                        durable: false,
                        max_connections: 500,
                    };
                    PrivateCluster::start(std::path::Path::new(dir), options)
                        .await
                        .expect("start the private test cluster")
                        .admin_url()
                }
            };
            PgConnectOptions::from_str(&url)
                .expect("DATABASE_URL parses")
                .disable_statement_logging()
        })
        .await
        .clone()
}

/// A database that is dropped when this value is.
pub struct TestDatabase {
    /// A pool on it.
    pub pool: PgPool,
    name: String,
}

/// A fresh, empty database (no migrations) and a pool on it.
pub async fn fresh_database(max_connections: u32) -> TestDatabase {
    let server = server().await;
    let name = format!("reserva_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server.connect().await.expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(server.database(&name))
        .await
        .expect("connect to the test database");
    TestDatabase { pool, name }
}

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
    LazyLock::force(&TRACING);
    let database = fresh_database(16).await;
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
        stripe_webhook_secret: WEBHOOK_SECRET.to_owned(),
        gateway: GatewaySettings::Simulated {
            delay: std::time::Duration::ZERO,
        },
        order_ttl: std::time::Duration::from_secs(900),
        booking_ttl: std::time::Duration::from_secs(1800),
        sagas: true,
        // Tests step deadlines themselves (`run_deadlines_once`); the job still runs.
        deadline_interval: std::time::Duration::from_secs(5),
        // Load tests send hundreds of requests from one address; rate-limit tests turn it on.
        rate_limits: None,
        auth: None,
        http_shutdown_timeout: std::time::Duration::from_secs(30),
        ready_max_lag_events: 10_000,
        verify_interval: None,
    };
    configure(&mut settings);
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

/// One row of the `events` table.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Per-aggregate sequence.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub payload: Value,
    /// Metadata.
    pub metadata: Value,
    /// Global position (database-filled).
    pub global_position: Option<i64>,
    /// Writing transaction (database-filled).
    pub transaction_id: Option<i64>,
}

impl TestApp {
    /// `POST` a JSON body to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST` a JSON body to `path` with an `Idempotency-Key` header.
    pub async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST` raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST /webhooks/stripe` with `body`, signed now with [`WEBHOOK_SECRET`] by the real
    /// scheme (the body is sent byte for byte as signed).
    pub async fn post_stripe_webhook(&self, body: &str) -> reqwest::Response {
        let signature = stripe_webhook::Webhook::generate_test_header(body, WEBHOOK_SECRET, None);
        self.client
            .post(format!("{}/webhooks/stripe", self.address))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }

    /// A token for `subject` with `role`, valid for an hour, signed with this server's secret
    /// (by the function `reserva token` uses). Panics when the server runs without auth.
    #[track_caller]
    pub fn token(&self, subject: &str, role: Role) -> String {
        let auth = self.settings.auth.as_ref().expect("a server with auth on");
        api::auth::mint(auth, subject, role, Duration::from_secs(3600)).expect("mint a token")
    }

    /// `POST` a JSON body to `path` with `Authorization: Bearer <token>`.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET` `path` with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// `GET` `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` once the read models have handled `position` (read-your-writes).
    pub async fn get_at(&self, path: &str, position: i64) -> reqwest::Response {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(&format!("{path}{sep}min_position={position}"))
            .await
    }

    /// The highest global position in the store (0 when empty): reads made with it as
    /// `min_position` see every write so far.
    pub async fn head(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("head")
    }

    /// Registers a product priced 1500 MXN; panics unless accepted.
    pub async fn register_product(&self, sku: &str, quantity: u32) {
        let response = self
            .post(
                "/api/v1/stock-items",
                &serde_json::json!({"sku": sku, "name": format!("Item {sku}"), "kind": "product",
                    "quantity": quantity, "low_stock_threshold": 1,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
            )
            .await;
        assert_eq!(response.status(), 202, "register {sku}");
    }

    /// Every stored event, in global order.
    pub async fn all_events(&self) -> Vec<StoredEvent> {
        self.query_events("TRUE", None).await
    }

    /// The events of one aggregate, in sequence order.
    pub async fn events_for(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<StoredEvent> {
        let filter = format!("aggregate_type = '{aggregate_type}' AND aggregate_id = $1");
        self.query_events(&filter, Some(aggregate_id)).await
    }

    /// Number of stored events.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    async fn query_events(&self, filter: &str, id: Option<&str>) -> Vec<StoredEvent> {
        let sql = format!(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, payload, metadata, \
             global_position, transaction_id::text::bigint AS transaction_id \
             FROM events WHERE {filter} ORDER BY global_position"
        );
        let mut query = sqlx::query(&sql);
        if let Some(id) = id {
            query = query.bind(id);
        }
        query
            .fetch_all(&self.pool)
            .await
            .expect("read events")
            .into_iter()
            .map(|row| StoredEvent {
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                sequence: row.get("sequence"),
                event_type: row.get("event_type"),
                payload: row.get("payload"),
                metadata: row.get("metadata"),
                global_position: row.get("global_position"),
                transaction_id: row.get("transaction_id"),
            })
            .collect()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let database = std::mem::take(&mut self.name);
        // Drop runs inside the test's runtime, where blocking on async work is not allowed:
        // clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = server().await.connect().await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Polls `check` every 20 ms until it answers `Some`, for at most 20 s; panics naming `what`
/// otherwise. Background work (subscriptions, projections) is awaited with this, never with a
/// bare sleep.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 20 s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last stored event in feed order, `(transaction_id, global_position)`, whether or not the
/// feed may hand it out yet. Once every writer has committed, a subscription whose checkpoint
/// reached this has handled everything. (The highest `global_position` alone is not enough: a
/// later transaction can hold a lower position.)
pub async fn feed_end(pool: &PgPool) -> feed::Checkpoint {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .expect("read the end of the feed");
    row.map_or(
        feed::Checkpoint::START,
        |(transaction_id, global_position)| feed::Checkpoint {
            transaction_id,
            global_position,
        },
    )
}

/// Waits (bounded) until subscription `name` has stored a checkpoint at or past
/// [`feed_end`] as it is now; returns that end.
pub async fn wait_until_caught_up(pool: &PgPool, name: &str) -> feed::Checkpoint {
    let end = feed_end(pool).await;
    eventually(&format!("subscription {name} to reach {end}"), || async {
        let mut conn = pool.acquire().await.expect("connection");
        let at = feed::checkpoint::stored(&mut conn, name)
            .await
            .expect("stored checkpoint");
        (at >= end).then_some(())
    })
    .await;
    end
}

/// Longest [`TestApp::catch_up`] waits for one projection.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

impl TestApp {
    /// Waits until every projection has handled every event committed so far, and returns the
    /// global position of the last of them in feed order (0 when there are none). Panics
    /// naming the projection that did not get there in time.
    ///
    /// The target is the last event in feed order, `(transaction_id, global_position)`, not
    /// [`TestApp::head`]: under concurrent writers a transaction with a higher id can hold a
    /// lower position, and a checkpoint past the highest position may not have reached it.
    pub async fn catch_up(&self) -> i64 {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .expect("the last event in feed order");
        let Some(last) = last else {
            return 0;
        };
        for name in projections::catalog::names() {
            projections::wait::until_reached(&self.pool, None, name, last, CATCH_UP_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("projection {name} did not catch up: {e}"));
        }
        last
    }

    /// Runs `lock` (e.g. `SELECT pg_advisory_lock(...)`) on a connection of its own, outside
    /// the pool, as another process would: the lock holds until the connection is closed
    /// or dropped.
    pub async fn hold_lock(&self, lock: &str) -> sqlx::PgConnection {
        let mut conn = feed::locks::dedicated_connection(&self.pool, "test lock holder")
            .await
            .expect("a connection of its own");
        sqlx::query(lock)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{lock}: {e}"));
        conn
    }

    /// Runs the deadline job once on the server's bus, as the scheduler would (100 rows per
    /// claim), and returns what it did; panics when it cannot claim.
    pub async fn run_deadlines_once(&self) -> commands::deadlines::Expired {
        commands::deadlines::run_once(&self.bus, 100)
            .await
            .expect("run the deadline job once")
    }

    /// `GET path`: its status and JSON body (`Null` when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every row of a read-model table as JSON text, ordered by `id`: two snapshots are equal
    /// exactly when the tables hold the same rows.
    pub async fn snapshot(&self, table: &str) -> Vec<String> {
        sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM {table} t ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("snapshot {table}: {e}"))
    }
}

/// A product registration as the command bus takes it (named `Item <sku>`, 1500 MXN), for
/// tests that write around HTTP.
pub fn register_product_command(
    sku: &str,
    quantity: u32,
    low_stock_threshold: u32,
) -> domain::stock_item::StockItemCommand {
    domain::stock_item::StockItemCommand::Register {
        sku: domain::Sku::parse(sku).expect("a valid sku"),
        name: format!("Item {sku}"),
        kind: domain::stock_item::StockKind::Product,
        quantity,
        low_stock_threshold,
        unit_price: domain::Money::new(1500, domain::Currency::parse("MXN").expect("MXN"))
            .expect("a price"),
    }
}
