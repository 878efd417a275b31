//! The Prometheus recorder: installed once per process, rendered by `GET /metrics`, plus the
//! HTTP middleware that counts and times every request.
//!
//! Counters and histograms are recorded where things happen (the command bus, the sagas, the
//! gateway, the subscriptions, webhooks). Gauges that describe the database — subscription lag
//! and position, dead letters, saga instances by state, stock levels — are sampled from the
//! server's own database on each scrape, so they are as fresh as the scrape and belong to the
//! database this server serves. docs/operations.md lists every series.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use commands::sagas::{BookingSaga, Flow, OrderSaga, SagaState};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of the projection lag histogram (seconds): fine below 50 ms, where the goal is, so
/// `histogram_quantile` over two scrapes gives usable p50/p95/p99.
const LAG_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03,
    0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Buckets of request and gateway call durations (seconds), and of any other histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of saga durations (seconds): milliseconds when payment is instant, up to the
/// order and booking TTLs (15 and 30 minutes by default) when customers never pay.
const SAGA_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
    3600.0,
];

/// Longest a scrape spends sampling the database before rendering what it has.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("reserva_projection_lag_seconds".to_owned()),
            &LAG_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("reserva_saga_duration_seconds".to_owned()),
            &SAGA_BUCKETS,
        )
}

/// The process's recorder, installed on first use. Every histogram is a Prometheus histogram
/// (rates and quantiles over any window, aggregatable across replicas).
///
/// The exporter spawns no upkeep task (no listener feature), so the first caller inside a
/// runtime starts one.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = builder().unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding test, say): keep ours local.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// Serializes sample-then-render, so with several servers in one process (tests) one scrape
/// cannot interleave another server's samples between its own and its render.
static SCRAPING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Samples the database gauges from `pool`, then renders the exposition text. A database that
/// does not answer in time leaves the gauges as last sampled (logged), never fails the scrape.
pub async fn scrape(pool: &PgPool, handle: &PrometheusHandle) -> String {
    let _one_at_a_time = SCRAPING.lock().await;
    sample_pool(pool);
    match tokio::time::timeout(SAMPLE_TIMEOUT, sample(pool)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not sample the database gauges"),
        Err(_) => tracing::warn!("sampling the database gauges timed out"),
    }
    handle.render()
}

/// This instance's pool, read from the pool itself (no query): how many connections it may
/// open, has open, and lends out now. `in_use / max` near 1 means requests queue for a
/// connection (and, past the acquire timeout, fail with 503): the `ReservaPoolSaturated` alert.
fn sample_pool(pool: &PgPool) {
    let max = f64::from(pool.options().get_max_connections());
    let open = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    metrics::gauge!("reserva_db_pool_max_connections").set(max);
    metrics::gauge!("reserva_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("reserva_db_pool_connections", "state" => "in_use").set((open - idle).max(0.0));
}

/// The sampled gauges: projections (lag, position, dead letters, stock), the sagas', the
/// integration-event publisher's and the webhook outbox's subscriptions, the webhook queue, and `reserva_saga_instances{saga,state}` for every saga and state (zero for
/// states no saga is in, so a drained state drops to 0 instead of keeping its last value).
async fn sample(pool: &PgPool) -> Result<(), sqlx::Error> {
    projections::status::sample_once(pool).await?;
    let sagas = [OrderSaga::NAME, BookingSaga::NAME];
    for saga in sagas {
        projections::status::sample_subscription(pool, saga).await?;
    }
    // The integration-event publisher, once it has run (without NATS it never starts, and a
    // lag gauge for it would only alarm).
    let publishing: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE name = $1)")
            .bind(crate::integration::publisher::NAME)
            .fetch_one(pool)
            .await?;
    if publishing {
        projections::status::sample_subscription(pool, crate::integration::publisher::NAME).await?;
    }
    sample_webhooks(pool).await?;
    let mut counts: HashMap<(String, String), i64> = commands::sagas::store::count_by_state(pool)
        .await?
        .into_iter()
        .map(|(saga, state, count)| ((saga, state), count))
        .collect();
    for saga in sagas {
        for state in SagaState::ALL {
            counts
                .entry((saga.to_owned(), state.as_str().to_owned()))
                .or_insert(0);
        }
    }
    for ((saga, state), count) in counts {
        metrics::gauge!("reserva_saga_instances", "saga" => saga, "state" => state)
            .set(count as f64);
    }
    Ok(())
}

/// The outbound webhooks' outbox subscription (once it has run) and their queue: pending
/// deliveries and the age of the oldest (a receiver that is down shows as a growing age).
/// Only pending rows are counted: they have an index of their own, while delivered and dead
/// ones accumulate.
async fn sample_webhooks(pool: &PgPool) -> Result<(), sqlx::Error> {
    let queueing: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE name = $1)")
            .bind(crate::outbound::outbox::NAME)
            .fetch_one(pool)
            .await?;
    if !queueing {
        return Ok(());
    }
    projections::status::sample_subscription(pool, crate::outbound::outbox::NAME).await?;
    let (pending, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8 \
         FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_one(pool)
    .await?;
    metrics::gauge!("reserva_webhook_deliveries_pending").set(pending as f64);
    metrics::gauge!("reserva_webhook_oldest_pending_seconds").set(oldest.unwrap_or(0.0));
    Ok(())
}

/// Middleware: counts every request in `reserva_http_requests_total{method,route,status}` and
/// times it in `reserva_http_request_duration_seconds`. `route` is the matched pattern
/// (`/api/v1/orders/{id}`), or `unmatched`, so ids and probes of random paths cannot grow the
/// label set.
pub async fn track_http(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status.as_str().to_owned()),
    ];
    metrics::counter!("reserva_http_requests_total", &labels).increment(1);
    metrics::histogram!("reserva_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    result
}

/// The method, or `other` for anything unusual (methods are free text in HTTP).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
