//! Typed settings, read once from the environment with defaults in code.

use commands::audit::AuditKey;
use commands::payment_gateway::{Chaos, ResiliencePolicy};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::edge::EdgeSettings;
use crate::integration::NatsSettings;
use crate::outbound::WebhookSettings;

/// What one instance runs (`reserva serve --role`).
///
/// Background work runs once across instances whatever the roles (each subscription, saga and
/// job holds a lease in PostgreSQL), so `all` everywhere is correct; the split lets a
/// deployment scale and restart the API without moving its background work, and keep that
/// work off the instances that answer customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InstanceRole {
    /// HTTP only: commands and queries; no projections, sagas or jobs.
    Api,
    /// Background work only; HTTP answers probes, `/metrics` and `/webhooks/stripe`.
    Workers,
    /// Both (the default).
    #[default]
    All,
}

impl InstanceRole {
    /// Whether this instance answers `/api/v1`, `/admin` and the docs.
    pub fn serves_api(self) -> bool {
        self != Self::Workers
    }

    /// Whether this instance runs (or stands by for) projections, sagas and jobs.
    pub fn runs_workers(self) -> bool {
        self != Self::Api
    }

    /// As written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Workers => "workers",
            Self::All => "all",
        }
    }
}

/// Everything `reserva serve` can be told. Tests build it in code.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`; `None` starts a private cluster under `data_dir`.
    pub database_url: Option<String>,
    /// `RESERVA_HTTP__HOST` (default `127.0.0.1`).
    pub http_host: String,
    /// `RESERVA_HTTP__PORT` (default `8080`; `0` picks a free port).
    pub http_port: u16,
    /// `RESERVA_HTTP__WORKERS` (default: one per core).
    pub http_workers: usize,
    /// `RESERVA_DB__MAX_CONNECTIONS` (default `32`).
    pub db_max_connections: u32,
    /// `RESERVA_DATA_DIR` (default `.reserva`): where the private cluster lives.
    pub data_dir: PathBuf,
    /// `RESERVA_READ__WAIT_MS` (default `5000`): the longest a query with `min_position`
    /// waits for its projection before answering 503.
    pub read_wait: Duration,
    /// `RESERVA_READ__CACHE_ROWS` (default `10000`; `0` turns it off): how many rows of each
    /// of stock items, orders and bookings the instance running their projections keeps in
    /// memory for single reads (ADR 0008). Off when queries read from a replica, whose rows
    /// lag the writer's.
    pub read_cache_rows: usize,
    /// `RESERVA_STRIPE__WEBHOOK_WAIT_MS` (default `2000`): the longest a Stripe delivery for
    /// a payment the saga has not recorded yet waits for it before answering 503.
    pub webhook_wait: Duration,
    /// `RESERVA_STRIPE__WEBHOOK_SECRET`: the endpoint secret Stripe signs webhooks with. When
    /// unset a random one is made per process, so nothing outside can forge a webhook (the
    /// simulated gateway signs with it in-process).
    pub stripe_webhook_secret: String,
    /// Which payment provider the sagas pay through.
    pub gateway: GatewaySettings,
    /// Timeouts, retries and breaker around the provider: `RESERVA_GATEWAY__TIMEOUT_MS`
    /// (default `10000`, one attempt) and `RESERVA_GATEWAY__BREAKER_COOL_DOWN_MS` (default
    /// `30000`, how long an open breaker refuses calls); the rest as
    /// [`ResiliencePolicy::default`].
    pub gateway_resilience: ResiliencePolicy,
    /// Faults the simulated gateway injects (`RESERVA_GATEWAY__CHAOS_REFUSE`, `…_HANG`,
    /// `…_MALFORMED`, shares of calls; default off). Ignored with Stripe: only the
    /// simulation can be told to misbehave.
    pub gateway_chaos: Chaos,
    /// `RESERVA_ORDERS__TTL_SECS` (default `900`): how long an unpaid order holds its stock.
    pub order_ttl: Duration,
    /// `RESERVA_BOOKINGS__TTL_SECS` (default `1800`): how long an unpaid booking holds seats.
    pub booking_ttl: Duration,
    /// `RESERVA_SAGAS__ENABLED` (default `true`): whether this process runs the order and
    /// booking sagas. Off, it still serves commands and queries (an API-only replica, or the
    /// process managers paused during an incident); orders then wait in STARTED until some
    /// process runs them.
    pub sagas: bool,
    /// `RESERVA_DEADLINES__INTERVAL_MS` (default `5000`): how often due deadlines are claimed.
    pub deadline_interval: Duration,
    /// `RESERVA_FEED__POLL_INTERVAL_MS` (default `250`): how often a subscription looks at the
    /// feed when no commit it follows woke it. Commits in this process wake it at once and
    /// those of other processes by `NOTIFY`; the poll is the fallback, and the most an event
    /// of a type it does not follow waits before its checkpoint passes it.
    pub feed_poll_interval: Duration,
    /// Per-client request budgets; `None` turns rate limiting off
    /// (`RESERVA_RATE_LIMIT__ENABLED`, default `true`).
    pub rate_limits: Option<RateLimits>,
    /// Bearer-token authentication; `None` (neither `RESERVA_AUTH__JWT_SECRET` nor
    /// `RESERVA_AUTH__JWKS_URL`) turns it off and every request acts with full rights, as a
    /// development server does.
    pub auth: Option<AuthSettings>,
    /// `RESERVA_HTTP__SHUTDOWN_TIMEOUT_SECS` (default `30`): on SIGTERM/SIGINT, how long
    /// in-flight requests may take to finish before their connections are closed; background
    /// work is stopped after that.
    pub http_shutdown_timeout: Duration,
    /// `RESERVA_READY__MAX_LAG_EVENTS` (default `10000`): `GET /health/ready` answers 503 while
    /// any projection is more than this many events behind the feed, so a replica that is
    /// catching up gets no reads it would answer stale.
    pub ready_max_lag_events: u64,
    /// `RESERVA_VERIFY__INTERVAL_SECS` (default `0`, off): how often the service verifies
    /// every projection against the event store (`reserva projections verify`), exporting
    /// `reserva_projection_verify_differences`. One instance at a time does it.
    pub verify_interval: Option<Duration>,
    /// Signed checkpoints of the event store's hash chains; `None` (no `RESERVA_AUDIT__KEY`)
    /// signs none, and `audit verify` then checks the chains but not the signatures.
    pub audit: Option<AuditSettings>,
    /// `RESERVA_SNAPSHOTS__EVERY` (default `500`, `0` off): a snapshot of an aggregate each
    /// time its stream grows by this many events, so a best-seller's cold load stays short.
    pub snapshot_every: usize,
    /// Integration events to NATS JetStream; `None` (no `NATS_URL`) publishes none.
    pub nats: Option<NatsSettings>,
    /// Outbound webhooks (`RESERVA_WEBHOOKS__*`); `None` (`RESERVA_WEBHOOKS__ENABLED=false`)
    /// queues and sends no deliveries on this instance (endpoints can still be registered).
    pub webhooks: Option<WebhookSettings>,
    /// `reserva serve --role` (or `RESERVA_ROLE`; default `all`): what this instance runs.
    pub role: InstanceRole,
    /// `RESERVA_DB__READ_URL`: a streaming replica that queries read from (commands, the
    /// feed and operations stay on the primary); `None` reads from the primary.
    pub read_url: Option<String>,
    /// Where rate-limit windows are counted across instances; `None` (no `REDIS_URL`)
    /// counts them in each process.
    pub shared_rate_limits: Option<SharedRateLimits>,
    /// CORS, security headers and compression (`RESERVA_HTTP__CORS_*`, see [`crate::edge`]).
    pub edge: EdgeSettings,
    /// `RESERVA_LIVE__BUFFER` (default `64`): messages a live view (server-sent events) may
    /// have waiting for its client before the client is disconnected as too slow.
    pub live_buffer: usize,
}

/// Rate-limit windows in Redis, shared by every instance.
#[derive(Debug, Clone)]
pub struct SharedRateLimits {
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379/0`.
    pub url: String,
    /// `RESERVA_RATE_LIMIT__REDIS_PREFIX` (default `reserva:rl:`): the start of every key, so
    /// deployments sharing one Redis keep separate budgets.
    pub prefix: String,
}

impl SharedRateLimits {
    fn from_env() -> Result<Option<Self>, ConfigError> {
        let url = match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => return Ok(None),
        };
        if let Err(error) = redis::Client::open(url.as_str()) {
            return Err(ConfigError {
                variable: "REDIS_URL",
                message: error.to_string(),
            });
        }
        Ok(Some(Self {
            url,
            prefix: var("RESERVA_RATE_LIMIT__REDIS_PREFIX", "reserva:rl:".to_owned())?,
        }))
    }
}

/// Where the audit key comes from, and how often checkpoints are signed.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `RESERVA_AUDIT__KEY`: the HMAC key checkpoints are signed with (at least 32 bytes).
    /// It lives in the service's environment only — never in the database it vouches for.
    pub key: AuditKey,
    /// `RESERVA_AUDIT__CHECKPOINT_INTERVAL_SECS` (default `300`): how often one is signed.
    pub checkpoint_interval: Duration,
}

impl AuditSettings {
    /// `RESERVA_AUDIT__KEY` and its interval: `None` when the key is unset or empty.
    ///
    /// # Errors
    /// [`ConfigError`] when the key is shorter than 32 bytes or the interval does not parse.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let key = match std::env::var("RESERVA_AUDIT__KEY") {
            Ok(key) if !key.is_empty() => key,
            _ => return Ok(None),
        };
        if key.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError {
                variable: "RESERVA_AUDIT__KEY",
                message: format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes, got {}",
                    key.len()
                ),
            });
        }
        Ok(Some(Self {
            key: AuditKey::new(key),
            checkpoint_interval: Duration::from_secs(var(
                "RESERVA_AUDIT__CHECKPOINT_INTERVAL_SECS",
                300,
            )?)
            .max(Duration::from_secs(1)),
        }))
    }
}

/// How many requests one client (token subject, else IP) may make: per one-minute window on
/// every limited route and on routes with a budget of their own, and per one-hour window by
/// role. Each budget is counted separately; a request spends from every budget that applies
/// to it. Admins spend none of them unless `admin_per_hour` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `RESERVA_RATE_LIMIT__PER_MINUTE` (default `100`): every limited request.
    pub per_minute: u64,
    /// `RESERVA_RATE_LIMIT__ORDERS_PER_MINUTE` (default `10`): `POST /api/v1/orders`.
    pub orders_per_minute: u64,
    /// `RESERVA_RATE_LIMIT__BOOKINGS_PER_MINUTE` (default `20`): `POST /api/v1/bookings`.
    pub bookings_per_minute: u64,
    /// `RESERVA_RATE_LIMIT__SENSITIVE_PER_MINUTE` (default `5`): the routes that move money
    /// back (`POST …/orders/{id}/cancel`, `…/bookings/{id}/cancel`), together.
    pub sensitive_per_minute: u64,
    /// `RESERVA_RATE_LIMIT__ANONYMOUS_PER_HOUR` (default `100`, `0` unlimited): callers
    /// without a verified token (every caller when auth is off), by address.
    pub anonymous_per_hour: u64,
    /// `RESERVA_RATE_LIMIT__CUSTOMER_PER_HOUR` (default `1000`, `0` unlimited): each customer.
    pub customer_per_hour: u64,
    /// `RESERVA_RATE_LIMIT__ADMIN_PER_HOUR` (default `0`: admins are unlimited, and spend no
    /// other budget either); set, each admin spends it and every other budget like anyone.
    pub admin_per_hour: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_minute: 100,
            orders_per_minute: 10,
            bookings_per_minute: 20,
            sensitive_per_minute: 5,
            anonymous_per_hour: 100,
            customer_per_hour: 1000,
            admin_per_hour: 0,
        }
    }
}

impl RateLimits {
    /// The limits when rate limiting is on, `None` when `RESERVA_RATE_LIMIT__ENABLED=false`.
    fn from_env() -> Result<Option<Self>, ConfigError> {
        if !var("RESERVA_RATE_LIMIT__ENABLED", true)? {
            return Ok(None);
        }
        let d = Self::default();
        Ok(Some(Self {
            per_minute: var("RESERVA_RATE_LIMIT__PER_MINUTE", d.per_minute)?,
            orders_per_minute: var("RESERVA_RATE_LIMIT__ORDERS_PER_MINUTE", d.orders_per_minute)?,
            bookings_per_minute: var(
                "RESERVA_RATE_LIMIT__BOOKINGS_PER_MINUTE",
                d.bookings_per_minute,
            )?,
            sensitive_per_minute: var(
                "RESERVA_RATE_LIMIT__SENSITIVE_PER_MINUTE",
                d.sensitive_per_minute,
            )?,
            anonymous_per_hour: var(
                "RESERVA_RATE_LIMIT__ANONYMOUS_PER_HOUR",
                d.anonymous_per_hour,
            )?,
            customer_per_hour: var("RESERVA_RATE_LIMIT__CUSTOMER_PER_HOUR", d.customer_per_hour)?,
            admin_per_hour: var("RESERVA_RATE_LIMIT__ADMIN_PER_HOUR", d.admin_per_hour)?,
        }))
    }
}

/// Shortest accepted HS256 secret: RFC 7518 §3.2 asks for a key at least as long as the hash.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How bearer tokens are verified (and minted by `reserva token`): an HS256 secret for tokens
/// Reserva mints itself, an identity provider's JWKS for RS256/ES256 tokens it issues, or both.
/// Auth is on when either is set.
#[derive(Clone)]
pub struct AuthSettings {
    jwt_secret: Option<String>,
    provider: Option<ProviderSettings>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret signs every token: never printed. The provider's settings hold no secret.
        f.debug_struct("AuthSettings")
            .field("hs256", &self.jwt_secret.is_some())
            .field("provider", &self.provider)
            .finish()
    }
}

impl AuthSettings {
    /// Auth with this HS256 secret.
    ///
    /// # Errors
    /// [`ConfigError`] when the secret is shorter than [`MIN_JWT_SECRET_BYTES`]: a short HMAC
    /// key can be brute-forced offline from any one token.
    pub fn new(jwt_secret: impl Into<String>) -> Result<Self, ConfigError> {
        let jwt_secret = jwt_secret.into();
        if jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError {
                variable: "RESERVA_AUTH__JWT_SECRET",
                message: format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes, got {}",
                    jwt_secret.len()
                ),
            });
        }
        Ok(Self {
            jwt_secret: Some(jwt_secret),
            provider: None,
        })
    }

    /// Auth with an identity provider's tokens only (no HS256 secret: `reserva token` cannot
    /// mint, and HS256 tokens are refused).
    pub fn provider_only(provider: ProviderSettings) -> Self {
        Self {
            jwt_secret: None,
            provider: Some(provider),
        }
    }

    /// These settings, also accepting the identity provider's tokens.
    #[must_use]
    pub fn with_provider(self, provider: ProviderSettings) -> Self {
        Self {
            provider: Some(provider),
            ..self
        }
    }

    /// `RESERVA_AUTH__JWT_SECRET` and the `RESERVA_AUTH__JWKS_URL` family: `None` when neither
    /// the secret nor the URL is set (auth off).
    ///
    /// # Errors
    /// [`ConfigError`] when the secret is set but too short, or the provider's settings are
    /// incomplete or do not parse.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let secret = match std::env::var("RESERVA_AUTH__JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => Some(Self::new(secret)?),
            _ => None,
        };
        let provider = ProviderSettings::from_env()?;
        Ok(match (secret, provider) {
            (Some(secret), Some(provider)) => Some(secret.with_provider(provider)),
            (Some(secret), None) => Some(secret),
            (None, Some(provider)) => Some(Self::provider_only(provider)),
            (None, None) => None,
        })
    }

    /// The HMAC key bytes, `None` when only an identity provider's tokens are accepted.
    pub fn jwt_secret(&self) -> Option<&[u8]> {
        self.jwt_secret.as_deref().map(str::as_bytes)
    }

    /// The identity provider whose tokens are accepted, if any.
    pub fn provider(&self) -> Option<&ProviderSettings> {
        self.provider.as_ref()
    }
}

/// An identity provider whose RS256/ES256 tokens are accepted: where its public keys are
/// published (a JWKS), whom its tokens must come from and be meant for, and which claims name
/// the caller and its role.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// `RESERVA_AUTH__JWKS_URL`: the provider's JSON Web Key Set, `https://` (plain `http://`
    /// only to a loopback address: keys fetched in the clear could be swapped on the way).
    pub jwks_url: String,
    /// `RESERVA_AUTH__ISSUER`: the `iss` every token must carry (required: without it any
    /// tenant of a shared provider could sign tokens that pass).
    pub issuer: String,
    /// `RESERVA_AUTH__AUDIENCE`: a value the token's `aud` must hold (required: without it a
    /// token the provider issued for another application would pass).
    pub audience: String,
    /// `RESERVA_AUTH__SUBJECT_CLAIM` (default `sub`): the claim holding the caller (a
    /// customer's id for customers). A dotted path (`user.id`) reaches into objects.
    pub subject_claim: String,
    /// `RESERVA_AUTH__ROLE_CLAIM` (default `role`): the claim holding `customer` or `admin`,
    /// as a string or an array of strings. A dotted path (`realm_access.roles`) reaches into
    /// objects.
    pub role_claim: String,
    /// `RESERVA_AUTH__JWKS_COOL_DOWN_MS` (default `10000`): the least time between two
    /// fetches of the key set, so a flood of tokens naming unknown keys cannot hammer the
    /// provider.
    pub cool_down: Duration,
}

impl ProviderSettings {
    /// A provider at `jwks_url` whose tokens come from `issuer` for `audience`, with the
    /// default claim names and cool-down.
    ///
    /// # Errors
    /// [`ConfigError`] when the URL does not parse, is not `https://` (or `http://` to a
    /// loopback address), or the issuer or audience is empty.
    pub fn new(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let settings = Self {
            jwks_url: jwks_url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            subject_claim: "sub".to_owned(),
            role_claim: "role".to_owned(),
            cool_down: Duration::from_secs(10),
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_jwks_url(&self.jwks_url)?;
        let required = [
            ("RESERVA_AUTH__ISSUER", &self.issuer),
            ("RESERVA_AUTH__AUDIENCE", &self.audience),
            ("RESERVA_AUTH__SUBJECT_CLAIM", &self.subject_claim),
            ("RESERVA_AUTH__ROLE_CLAIM", &self.role_claim),
        ];
        for (variable, value) in required {
            if value.trim().is_empty() {
                return Err(ConfigError {
                    variable,
                    message: "must not be empty with RESERVA_AUTH__JWKS_URL set".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The provider of `RESERVA_AUTH__JWKS_URL`: `None` when it is unset or empty.
    ///
    /// # Errors
    /// [`ConfigError`] when the issuer or audience is missing, a value does not parse, or a
    /// provider setting is set without the URL (a mistyped URL variable would otherwise leave
    /// auth off, or on with HS256 only, while the operator believes the provider is used).
    fn from_env() -> Result<Option<Self>, ConfigError> {
        const DEPENDENT: [&str; 5] = [
            "RESERVA_AUTH__ISSUER",
            "RESERVA_AUTH__AUDIENCE",
            "RESERVA_AUTH__SUBJECT_CLAIM",
            "RESERVA_AUTH__ROLE_CLAIM",
            "RESERVA_AUTH__JWKS_COOL_DOWN_MS",
        ];
        let set = |variable: &str| std::env::var(variable).is_ok_and(|value| !value.is_empty());
        let jwks_url = match std::env::var("RESERVA_AUTH__JWKS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                return match DEPENDENT.into_iter().find(|variable| set(variable)) {
                    Some(variable) => Err(ConfigError {
                        variable,
                        message: "is only used with RESERVA_AUTH__JWKS_URL, which is unset"
                            .to_owned(),
                    }),
                    None => Ok(None),
                };
            }
        };
        for variable in ["RESERVA_AUTH__ISSUER", "RESERVA_AUTH__AUDIENCE"] {
            if !set(variable) {
                return Err(ConfigError {
                    variable,
                    message: "is required with RESERVA_AUTH__JWKS_URL".to_owned(),
                });
            }
        }
        let settings = Self {
            jwks_url,
            issuer: var("RESERVA_AUTH__ISSUER", String::new())?,
            audience: var("RESERVA_AUTH__AUDIENCE", String::new())?,
            subject_claim: var("RESERVA_AUTH__SUBJECT_CLAIM", "sub".to_owned())?,
            role_claim: var("RESERVA_AUTH__ROLE_CLAIM", "role".to_owned())?,
            cool_down: Duration::from_millis(var("RESERVA_AUTH__JWKS_COOL_DOWN_MS", 10_000)?),
        };
        settings.validate()?;
        Ok(Some(settings))
    }
}

/// A JWKS URL must parse, and be `https://` unless it points at this machine.
fn check_jwks_url(raw: &str) -> Result<(), ConfigError> {
    let error = |message: String| ConfigError {
        variable: "RESERVA_AUTH__JWKS_URL",
        message,
    };
    let url = reqwest::Url::parse(raw).map_err(|e| error(format!("{raw:?}: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(error(format!(
            "{raw:?}: use https (plain http only to a loopback address)"
        ))),
        other => Err(error(format!("{raw:?}: scheme {other} (expected https)"))),
    }
}

/// The payment provider.
#[derive(Clone)]
pub enum GatewaySettings {
    /// The default when `RESERVA_STRIPE__SECRET_KEY` is unset: intents settle in-process and
    /// signed webhooks come back to this service after `delay`
    /// (`RESERVA_GATEWAY__SIMULATED_DELAY_MS`, default `0`).
    Simulated {
        /// Time between creating an intent and its webhook.
        delay: Duration,
    },
    /// Stripe itself.
    Stripe {
        /// `RESERVA_STRIPE__SECRET_KEY` (`sk_…`).
        secret_key: String,
        /// `RESERVA_STRIPE__API_BASE`: another API address (a fake Stripe in tests).
        api_base: Option<String>,
    },
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Simulated { delay } => f.debug_struct("Simulated").field("delay", delay).finish(),
            // The key is a secret: never printed.
            Self::Stripe { api_base, .. } => f
                .debug_struct("Stripe")
                .field("api_base", api_base)
                .finish_non_exhaustive(),
        }
    }
}

impl GatewaySettings {
    /// Stripe when a secret key is set, the simulation otherwise.
    fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("RESERVA_STRIPE__SECRET_KEY") {
            Ok(secret_key) if !secret_key.is_empty() => Ok(Self::Stripe {
                secret_key,
                api_base: std::env::var("RESERVA_STRIPE__API_BASE")
                    .ok()
                    .filter(|s| !s.is_empty()),
            }),
            _ => Ok(Self::Simulated {
                delay: Duration::from_millis(var("RESERVA_GATEWAY__SIMULATED_DELAY_MS", 0)?),
            }),
        }
    }
}

/// The resilience policy with the timeout and cool-down the environment sets.
fn resilience_from_env() -> Result<ResiliencePolicy, ConfigError> {
    let default = ResiliencePolicy::default();
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let timeout = var(
        "RESERVA_GATEWAY__TIMEOUT_MS",
        millis(default.attempt_timeout),
    )?;
    let cool_down = var(
        "RESERVA_GATEWAY__BREAKER_COOL_DOWN_MS",
        millis(default.cool_down),
    )?;
    if timeout == 0 {
        return Err(ConfigError {
            variable: "RESERVA_GATEWAY__TIMEOUT_MS",
            message: "must be at least 1".to_owned(),
        });
    }
    Ok(ResiliencePolicy {
        attempt_timeout: Duration::from_millis(timeout),
        cool_down: Duration::from_millis(cool_down),
        ..default
    })
}

/// The chaos shares, validated: a share outside `0..=1` or shares summing over 1 stop the
/// start rather than run a test of something other than what was asked.
fn chaos_from_env() -> Result<Chaos, ConfigError> {
    let refuse = var("RESERVA_GATEWAY__CHAOS_REFUSE", 0.0)?;
    let hang = var("RESERVA_GATEWAY__CHAOS_HANG", 0.0)?;
    let malformed = var("RESERVA_GATEWAY__CHAOS_MALFORMED", 0.0)?;
    Chaos::new(refuse, hang, malformed).map_err(|error| ConfigError {
        variable: "RESERVA_GATEWAY__CHAOS_*",
        message: error.to_string(),
    })
}

/// A variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub(crate) variable: &'static str,
    pub(crate) message: String,
}

/// `variable` parsed, or `default` when it is unset or empty.
pub(crate) fn var<T: FromStr>(variable: &'static str, default: T) -> Result<T, ConfigError> {
    match std::env::var(variable) {
        Ok(raw) if !raw.is_empty() => raw.parse().map_err(|_| ConfigError {
            variable,
            message: format!("cannot parse {raw:?}"),
        }),
        _ => Ok(default),
    }
}

impl Settings {
    /// Reads the environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            database_url: std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()),
            http_host: var("RESERVA_HTTP__HOST", "127.0.0.1".to_owned())?,
            http_port: var("RESERVA_HTTP__PORT", 8080)?,
            http_workers: var("RESERVA_HTTP__WORKERS", cores)?,
            db_max_connections: var("RESERVA_DB__MAX_CONNECTIONS", 32)?,
            data_dir: var("RESERVA_DATA_DIR", PathBuf::from(".reserva"))?,
            read_wait: Duration::from_millis(var("RESERVA_READ__WAIT_MS", 5000)?),
            read_cache_rows: var("RESERVA_READ__CACHE_ROWS", 10_000)?,
            webhook_wait: Duration::from_millis(var("RESERVA_STRIPE__WEBHOOK_WAIT_MS", 2000)?),
            stripe_webhook_secret: std::env::var("RESERVA_STRIPE__WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("whsec_{}", uuid::Uuid::new_v4().simple())),
            gateway: GatewaySettings::from_env()?,
            gateway_resilience: resilience_from_env()?,
            gateway_chaos: chaos_from_env()?,
            order_ttl: Duration::from_secs(var("RESERVA_ORDERS__TTL_SECS", 900)?),
            booking_ttl: Duration::from_secs(var("RESERVA_BOOKINGS__TTL_SECS", 1800)?),
            sagas: var("RESERVA_SAGAS__ENABLED", true)?,
            deadline_interval: Duration::from_millis(var("RESERVA_DEADLINES__INTERVAL_MS", 5000)?),
            feed_poll_interval: Duration::from_millis(var("RESERVA_FEED__POLL_INTERVAL_MS", 250)?),
            rate_limits: RateLimits::from_env()?,
            auth: AuthSettings::from_env()?,
            http_shutdown_timeout: Duration::from_secs(var(
                "RESERVA_HTTP__SHUTDOWN_TIMEOUT_SECS",
                30,
            )?),
            ready_max_lag_events: var("RESERVA_READY__MAX_LAG_EVENTS", 10_000)?,
            verify_interval: Some(Duration::from_secs(var(
                "RESERVA_VERIFY__INTERVAL_SECS",
                0,
            )?))
            .filter(|interval| !interval.is_zero()),
            audit: AuditSettings::from_env()?,
            snapshot_every: var("RESERVA_SNAPSHOTS__EVERY", 500)?,
            nats: nats_from_env()?,
            webhooks: webhooks_from_env()?,
            // `reserva serve --role` sets it (clap reads RESERVA_ROLE there).
            role: InstanceRole::All,
            shared_rate_limits: SharedRateLimits::from_env()?,
            edge: EdgeSettings::from_env()?,
            live_buffer: var("RESERVA_LIVE__BUFFER", 64)?,
            read_url: std::env::var("RESERVA_DB__READ_URL")
                .ok()
                .filter(|u| !u.is_empty()),
        })
    }
}

/// `RESERVA_WEBHOOKS__*`: `None` when `RESERVA_WEBHOOKS__ENABLED=false`.
fn webhooks_from_env() -> Result<Option<WebhookSettings>, ConfigError> {
    if !var("RESERVA_WEBHOOKS__ENABLED", true)? {
        return Ok(None);
    }
    let default = WebhookSettings::default();
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let at_least_one = |variable: &'static str, value: u64| {
        if value == 0 {
            Err(ConfigError {
                variable,
                message: "must be at least 1".to_owned(),
            })
        } else {
            Ok(value)
        }
    };
    let max_attempts = var("RESERVA_WEBHOOKS__MAX_ATTEMPTS", default.max_attempts)?;
    at_least_one("RESERVA_WEBHOOKS__MAX_ATTEMPTS", u64::from(max_attempts))?;
    let base = at_least_one(
        "RESERVA_WEBHOOKS__RETRY_BASE_MS",
        var(
            "RESERVA_WEBHOOKS__RETRY_BASE_MS",
            millis(default.backoff.base),
        )?,
    )?;
    let max = var(
        "RESERVA_WEBHOOKS__RETRY_MAX_MS",
        millis(default.backoff.max),
    )?
    .max(base);
    let timeout = at_least_one(
        "RESERVA_WEBHOOKS__TIMEOUT_MS",
        var("RESERVA_WEBHOOKS__TIMEOUT_MS", millis(default.timeout))?,
    )?;
    Ok(Some(WebhookSettings {
        max_attempts,
        backoff: feed::backoff::Backoff::new(
            Duration::from_millis(base),
            Duration::from_millis(max),
        ),
        timeout: Duration::from_millis(timeout),
        poll_interval: default.poll_interval,
    }))
}

/// `NATS_URL`, `RESERVA_NATS__PREFIX` and `RESERVA_NATS__REPLICAS`: `None` when the URL is
/// unset or empty.
fn nats_from_env() -> Result<Option<NatsSettings>, ConfigError> {
    let url = match std::env::var("NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => return Ok(None),
    };
    let prefix = var("RESERVA_NATS__PREFIX", String::new())?;
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError {
            variable: "RESERVA_NATS__PREFIX",
            message: format!("{prefix:?}: letters, digits, '-' and '_' only"),
        });
    }
    let replicas = var("RESERVA_NATS__REPLICAS", 1)?;
    if !(1..=5).contains(&replicas) {
        return Err(ConfigError {
            variable: "RESERVA_NATS__REPLICAS",
            message: format!("{replicas}: JetStream keeps 1 to 5 copies"),
        });
    }
    Ok(Some(NatsSettings {
        url,
        prefix,
        replicas,
    }))
}

/// Opens the service's pool.
///
/// Every connection gets `idle_in_transaction_session_timeout`: the ordered feed cannot pass
/// an open transaction, so one of ours left idle must not be able to stall every reader for
/// long. The service never idles inside a transaction on purpose (retries back off outside
/// them), so 15 s only ever ends a stuck one.
///
/// A connection is checked with a round trip before it is handed out only when it has been
/// idle for more than [`PING_AFTER_IDLE`] (HikariCP's "alive bypass window"): sqlx's default
/// pings before every acquire, which doubled the round trips of a read, and a connection used
/// a moment ago is as alive as a ping would show. One that died since is found by the query
/// that uses it, which fails like any other database error and closes it.
///
/// # Errors
/// The URL does not parse or the server cannot be reached.
pub async fn connect_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(url, max_connections)?;
    pool.connect_with(options).await
}

/// A pool on a streaming replica (`RESERVA_DB__READ_URL`) for queries, configured like
/// [`connect_pool`]'s and connected lazily: a replica that is down when the service starts
/// fails the queries that need it (503), not the start.
///
/// # Errors
/// The URL does not parse.
pub fn connect_read_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(url, max_connections)?;
    Ok(pool.connect_lazy_with(options))
}

fn pool_options(
    url: &str,
    max_connections: u32,
) -> Result<(PgPoolOptions, PgConnectOptions), sqlx::Error> {
    let options =
        PgConnectOptions::from_str(url)?.options([("idle_in_transaction_session_timeout", "15s")]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        });
    Ok((pool, options))
}

/// How long a pooled connection may sit idle before it is pinged on its way out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_url_is_https_or_plain_http_to_this_machine_only() {
        let provider = |url: &str| ProviderSettings::new(url, "https://idp.example", "reserva");
        assert!(provider("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(provider("http://127.0.0.1:8081/jwks").is_ok());
        assert!(provider("http://localhost/jwks").is_ok());
        assert!(provider("http://[::1]:9000/jwks").is_ok());
        for refused in [
            "http://idp.example/jwks",
            "ftp://idp.example/jwks",
            "idp.example/jwks",
            "",
        ] {
            let error = provider(refused).expect_err(refused).to_string();
            assert!(error.starts_with("RESERVA_AUTH__JWKS_URL: "), "{error}");
        }
    }

    #[test]
    fn a_provider_needs_an_issuer_and_an_audience() {
        let url = "https://idp.example/jwks";
        let no_issuer = ProviderSettings::new(url, "", "reserva").unwrap_err();
        let no_audience = ProviderSettings::new(url, "https://idp.example", " ").unwrap_err();
        assert!(no_issuer.to_string().starts_with("RESERVA_AUTH__ISSUER: "));
        assert!(
            no_audience
                .to_string()
                .starts_with("RESERVA_AUTH__AUDIENCE: ")
        );
    }

    #[test]
    fn the_secret_is_never_printed() {
        let secret = "0123456789abcdef0123456789abcdef-secret";
        let provider =
            ProviderSettings::new("https://idp.example/jwks", "https://idp.example", "reserva")
                .unwrap();
        let settings = AuthSettings::new(secret).unwrap().with_provider(provider);
        let printed = format!("{settings:?}");
        assert!(!printed.contains(secret), "{printed}");
        assert!(printed.contains("idp.example"), "{printed}");
    }
}
