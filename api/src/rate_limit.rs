//! Per-client request budgets: fixed one-minute windows, counted in memory or, shared by every
//! instance, in Redis.
//!
//! Built on `actix-extensible-rate-limit`: its [`RateLimiter`] middleware and its
//! [`InMemoryBackend`] (a fixed window per key in a `DashMap`) or [`RedisBackend`] (the same
//! window as one Redis key, incremented atomically) do the counting; this module decides who
//! the client is, which budgets a request spends from, and how a refusal looks.
//!
//! - **Client**: the verified token subject (the [`Caller`] the auth middleware left in the
//!   request's extensions, so auth must run before the limiters), else the socket peer's IP
//!   (IPv6 grouped by /64). Behind a reverse proxy every client shares the proxy's address;
//!   trusting `X-Forwarded-For` would let any client pick its own budget, so it is not read.
//! - **Budgets**: [`overall`] (per minute) and [`by_role`] (per hour: anonymous, customer,
//!   admin) wrap the guarded scopes of the route table (the platform endpoints are outside
//!   them); [`route`] wraps the routes with a budget of their own (order and booking creation,
//!   and the cancels that move money back, which share the `sensitive` budget). Admins spend
//!   no budget at all unless an admin hourly budget is configured. A request refused by a route budget has already been
//!   counted by the overall one (the scope's limiter runs first): every attempt costs, so
//!   hammering a refused route also drains the client's overall budget. Server errors (5xx)
//!   are given back to both.
//! - **Headers**: `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`
//!   (seconds until the window resets) describe the budget with the fewest requests left, the
//!   one that will refuse first (the route budget on a tie); a 429 describes the budget that
//!   refused and adds `retry-after`.
//! - **Where the counts live**: in this process by default, so with several instances each
//!   grants the full budget; with `REDIS_URL` in Redis, so the budget holds across all of them.
//!   When Redis does not answer (within [`REDIS_TIMEOUT`]) a request is let through uncounted
//!   and `reserva_rate_limit_backend_errors_total` counts it: a limiter outage must not become
//!   an API outage.

use actix_extensible_rate_limit::backend::memory::InMemoryBackend;
use actix_extensible_rate_limit::backend::redis::RedisBackend;
use actix_extensible_rate_limit::backend::{Backend, Decision, SimpleInput, SimpleOutput};
use actix_extensible_rate_limit::{HeaderCompatibleOutput, RateLimiter};
use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::{Caller, Role};
use crate::configuration::RateLimits;
use crate::problem::ApiError;

/// Length of the per-minute windows.
const WINDOW: Duration = Duration::from_secs(60);

/// Length of the per-role windows.
const HOUR: Duration = Duration::from_secs(3600);

/// The longest a request waits for Redis (connecting or counting) before it passes uncounted.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Every limited request.
    Overall,
    /// `POST /api/v1/orders`.
    Orders,
    /// `POST /api/v1/bookings`.
    Bookings,
    /// The cancels, which refund: `POST /api/v1/orders/{id}/cancel`, `…/bookings/{id}/cancel`.
    Sensitive,
    /// Per hour, callers without a verified token.
    Anonymous,
    /// Per hour, each customer.
    Customer,
    /// Per hour, each admin (only when configured).
    Admin,
}

impl Limit {
    /// Its size in requests per [window](Limit::window) under `limits` (`0`: unlimited,
    /// for the per-role budgets).
    fn size(self, limits: &RateLimits) -> u64 {
        match self {
            Self::Overall => limits.per_minute,
            Self::Orders => limits.orders_per_minute,
            Self::Bookings => limits.bookings_per_minute,
            Self::Sensitive => limits.sensitive_per_minute,
            Self::Anonymous => limits.anonymous_per_hour,
            Self::Customer => limits.customer_per_hour,
            Self::Admin => limits.admin_per_hour,
        }
    }

    /// How long one of its windows lasts.
    fn window(self) -> Duration {
        match self {
            Self::Anonymous | Self::Customer | Self::Admin => HOUR,
            _ => WINDOW,
        }
    }

    /// "minute" or "hour", for people.
    fn per(self) -> &'static str {
        if self.window() == HOUR {
            "hour"
        } else {
            "minute"
        }
    }

    /// The `limit` label of `reserva_rate_limited_total` and the key prefix.
    pub fn label(self) -> &'static str {
        match self {
            Self::Overall => "overall",
            Self::Orders => "orders",
            Self::Bookings => "bookings",
            Self::Sensitive => "sensitive",
            Self::Anonymous => "anonymous",
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
}

/// Whether `req`'s verified caller is an admin who spends no budget under `limits`.
fn exempt(req: &ServiceRequest, limits: &RateLimits) -> bool {
    limits.admin_per_hour == 0
        && req
            .extensions()
            .get::<Caller>()
            .is_some_and(|c| c.role == Role::Admin)
}

/// The per-hour budget `req` spends from, by its caller's role.
fn role_limit(req: &ServiceRequest) -> Limit {
    match req.extensions().get::<Caller>().map(|c| c.role) {
        Some(Role::Admin) => Limit::Admin,
        Some(Role::Customer) => Limit::Customer,
        None => Limit::Anonymous,
    }
}

/// Who spends the budget: `sub:<subject>` for a verified caller, `ip:<address>` otherwise.
pub fn client_key(req: &ServiceRequest) -> String {
    if let Some(caller) = req.extensions().get::<Caller>() {
        return format!("sub:{}", caller.subject);
    }
    match req.peer_addr().map(|a| a.ip()) {
        Some(IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => {
            // One host usually holds a whole /64; keying by address would give it billions
            // of budgets.
            let s = ip.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(ip)) => format!("ip:{}", ip.to_canonical()),
        Some(ip) => format!("ip:{ip}"),
        // Only in-process test requests have no peer; they share one budget.
        None => "ip:unknown".to_owned(),
    }
}

/// What one request spends: one unit of `limit`'s budget for its client.
pub struct Charge {
    limit: Limit,
    input: SimpleInput,
}

impl Charge {
    fn new(limit: Limit, max_requests: u64, client: &str) -> Self {
        Self {
            limit,
            input: SimpleInput {
                interval: limit.window(),
                max_requests,
                key: format!("{}:{client}", limit.label()),
            },
        }
    }
}

/// A budget's state after a request.
pub struct Status {
    limit: Limit,
    output: SimpleOutput,
}

/// The windows of every budget, shared by a server's workers (and, with Redis, by every
/// instance).
///
/// The crate's in-memory backend spawns its sweeper (which drops ended windows) with
/// `actix_web::rt::spawn`, which only works on an actix worker thread, so it is created by
/// the first worker that asks; the rest share it. It is held behind an `Arc` because the
/// backend stops its sweeper when any copy of it is dropped, and the middleware copies the
/// backend for every request.
#[derive(Clone, Default)]
pub struct Windows {
    memory: Arc<OnceLock<Arc<InMemoryBackend>>>,
    shared: Option<Arc<SharedWindows>>,
}

/// Windows kept in Redis: connected on first use (the service starts whether or not Redis
/// answers), reconnected by the connection manager after a failure.
pub struct SharedWindows {
    client: redis::Client,
    prefix: String,
    backend: tokio::sync::OnceCell<RedisBackend>,
}

impl SharedWindows {
    async fn backend(&self) -> Result<&RedisBackend, String> {
        self.backend
            .get_or_try_init(|| async {
                let manager = tokio::time::timeout(
                    REDIS_TIMEOUT,
                    redis::aio::ConnectionManager::new(self.client.clone()),
                )
                .await
                .map_err(|_| "connecting timed out".to_owned())?
                .map_err(|e| e.to_string())?;
                Ok(RedisBackend::builder(manager)
                    .key_prefix(Some(&self.prefix))
                    .build())
            })
            .await
    }

    async fn request(
        &self,
        input: SimpleInput,
    ) -> Result<(Decision, SimpleOutput, String), String> {
        let backend = self.backend().await?;
        tokio::time::timeout(REDIS_TIMEOUT, backend.request(input))
            .await
            .map_err(|_| "counting timed out".to_owned())?
            .map_err(|e| e.to_string())
    }
}

impl Windows {
    /// Windows in Redis at `url` (`redis://host:port/db`), under keys starting with `prefix`.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn shared(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            memory: Arc::default(),
            shared: Some(Arc::new(SharedWindows {
                client: redis::Client::open(url)?,
                prefix: prefix.to_owned(),
                backend: tokio::sync::OnceCell::new(),
            })),
        })
    }

    fn counter(&self) -> Counter {
        if let Some(shared) = &self.shared {
            return Counter::Shared(Arc::clone(shared));
        }
        Counter::Memory(Arc::clone(self.memory.get_or_init(|| {
            Arc::new(
                InMemoryBackend::builder()
                    .with_gc_interval(Some(WINDOW))
                    .build(),
            )
        })))
    }
}

/// The backend the limiters use: requests without a charge pass uncounted.
#[derive(Clone)]
pub enum Counter {
    /// This process's windows.
    Memory(Arc<InMemoryBackend>),
    /// Every instance's windows, in Redis.
    Shared(Arc<SharedWindows>),
}

impl Backend<Option<Charge>> for Counter {
    type Output = Option<Status>;
    type RollbackToken = Option<String>;
    type Error = Infallible;

    async fn request(
        &self,
        charge: Option<Charge>,
    ) -> Result<(Decision, Option<Status>, Option<String>), Infallible> {
        let Some(Charge { limit, input }) = charge else {
            return Ok((Decision::Allowed, None, None));
        };
        let (decision, output, token) = match self {
            Self::Memory(memory) => memory.request(input).await?,
            Self::Shared(shared) => match shared.request(input).await {
                Ok(counted) => counted,
                Err(error) => {
                    tracing::warn!(%error, "rate limit not counted: Redis unavailable");
                    metrics::counter!("reserva_rate_limit_backend_errors_total").increment(1);
                    return Ok((Decision::Allowed, None, None));
                }
            },
        };
        Ok((decision, Some(Status { limit, output }), Some(token)))
    }

    async fn rollback(&self, token: Option<String>) -> Result<(), Infallible> {
        let Some(token) = token else {
            return Ok(());
        };
        match self {
            Self::Memory(memory) => memory.rollback(token).await,
            Self::Shared(shared) => {
                if let Ok(backend) = shared.backend().await
                    && let Err(error) = backend.rollback(token).await
                {
                    tracing::debug!(%error, "rate limit not given back: Redis unavailable");
                }
                Ok(())
            }
        }
    }
}

/// What the limiters' input functions return.
type ChargeFuture = Ready<Result<Option<Charge>, actix_web::Error>>;

/// The overall budget, on every request it wraps; counts nothing when `limits` is `None`.
pub fn overall(
    windows: &Windows,
    limits: Option<RateLimits>,
) -> RateLimiter<Counter, Option<Status>, impl Fn(&ServiceRequest) -> ChargeFuture + use<>> {
    route(windows, limits, Limit::Overall)
}

/// `limit`'s budget, on every request it wraps; counts nothing when `limits` is `None`, nor
/// for an exempt admin.
pub fn route(
    windows: &Windows,
    limits: Option<RateLimits>,
    limit: Limit,
) -> RateLimiter<Counter, Option<Status>, impl Fn(&ServiceRequest) -> ChargeFuture + use<>> {
    limiter(windows, move |req: &ServiceRequest| {
        let charge = limits
            .as_ref()
            .filter(|l| !exempt(req, l))
            .map(|l| Charge::new(limit, limit.size(l), &client_key(req)));
        ready(Ok(charge))
    })
}

/// The hourly budget of the caller's role (anonymous, customer, admin), on every request it
/// wraps; a role whose budget is `0` is unlimited.
pub fn by_role(
    windows: &Windows,
    limits: Option<RateLimits>,
) -> RateLimiter<Counter, Option<Status>, impl Fn(&ServiceRequest) -> ChargeFuture + use<>> {
    limiter(windows, move |req: &ServiceRequest| {
        let charge = limits.as_ref().and_then(|l| {
            let limit = role_limit(req);
            let size = limit.size(l);
            (size > 0).then(|| Charge::new(limit, size, &client_key(req)))
        });
        ready(Ok(charge))
    })
}

fn limiter<F>(windows: &Windows, input: F) -> RateLimiter<Counter, Option<Status>, F>
where
    F: Fn(&ServiceRequest) -> ChargeFuture + 'static,
{
    RateLimiter::builder(windows.counter(), input)
        .rollback_server_errors()
        .request_allowed_transformation(Some(describe))
        .request_denied_response(refuse)
        .build()
}

/// Sets the `x-ratelimit-*` headers unless they already describe a budget with as few
/// requests left (an inner one, or the one that refused the request).
fn describe(headers: &mut HeaderMap, status: Option<&Option<Status>>, rolled_back: bool) {
    let Some(Some(status)) = status else {
        return;
    };
    let remaining = status.output.remaining() + u64::from(rolled_back);
    let shown = headers
        .get(REMAINING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A refusal by the inner budget shows 0 left, so it always keeps naming that budget.
    if shown.is_some_and(|shown| shown <= remaining) {
        return;
    }
    insert_headers(headers, status, remaining);
}

fn insert_headers(headers: &mut HeaderMap, status: &Status, remaining: u64) {
    headers.insert(LIMIT, HeaderValue::from(status.output.limit()));
    headers.insert(REMAINING, HeaderValue::from(remaining));
    headers.insert(
        RESET,
        HeaderValue::from(status.output.seconds_until_reset()),
    );
}

/// The 429 problem for a spent budget.
fn refuse(status: &Option<Status>) -> HttpResponse {
    let Some(status) = status else {
        // The backend only refuses a charged request, which always has a status.
        return ApiError::rate_limited("too many requests", WINDOW.as_secs()).error_response();
    };
    metrics::counter!("reserva_rate_limited_total", "limit" => status.limit.label()).increment(1);
    let retry_after = status.output.seconds_until_reset().max(1);
    let detail = format!(
        "the {} limit of {} requests per {} is spent; retry in {retry_after} s",
        status.limit.label(),
        status.output.limit(),
        status.limit.per(),
    );
    let mut response = ApiError::rate_limited(detail, retry_after).error_response();
    insert_headers(response.headers_mut(), status, 0);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn peer(addr: &str) -> ServiceRequest {
        TestRequest::default()
            .peer_addr(addr.parse().unwrap())
            .to_srv_request()
    }

    #[test]
    fn a_verified_caller_is_keyed_by_subject_whatever_its_address() {
        let a = peer("10.0.0.1:1000");
        a.extensions_mut().insert(Caller {
            subject: "alice".to_owned(),
            role: Role::Customer,
        });
        let b = peer("10.0.0.1:1001");
        b.extensions_mut().insert(Caller {
            subject: "bob".to_owned(),
            role: Role::Customer,
        });
        assert_eq!(client_key(&a), "sub:alice");
        assert_eq!(client_key(&b), "sub:bob");
    }

    #[test]
    fn anonymous_clients_are_keyed_by_ip_and_ipv6_by_its_64() {
        assert_eq!(client_key(&peer("10.0.0.1:1000")), "ip:10.0.0.1");
        assert_ne!(
            client_key(&peer("10.0.0.1:1000")),
            client_key(&peer("10.0.0.2:1000"))
        );
        assert_eq!(
            client_key(&peer("[2001:db8:1:2:aaaa::1]:1")),
            client_key(&peer("[2001:db8:1:2:bbbb::9]:1"))
        );
        assert_ne!(
            client_key(&peer("[2001:db8:1:2::1]:1")),
            client_key(&peer("[2001:db8:1:3::1]:1"))
        );
    }

    #[test]
    fn each_budget_has_its_own_size() {
        let limits = RateLimits::default();
        assert_eq!(Limit::Overall.size(&limits), 100);
        assert_eq!(Limit::Orders.size(&limits), 10);
        assert_eq!(Limit::Bookings.size(&limits), 20);
        assert_eq!(Limit::Sensitive.size(&limits), 5);
        assert_eq!(Limit::Anonymous.size(&limits), 100);
        assert_eq!(Limit::Customer.size(&limits), 1000);
        assert_eq!(
            Limit::Admin.size(&limits),
            0,
            "admins are unlimited by default"
        );
        assert_eq!(Limit::Customer.window(), Duration::from_secs(3600));
        assert_eq!(Limit::Overall.window(), Duration::from_secs(60));
    }
}
