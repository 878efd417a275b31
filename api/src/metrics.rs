//! The Prometheus recorder: installed once per process, rendered by `GET /metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of the projection lag histogram (seconds): fine below 50 ms, where the goal is, so
/// `histogram_quantile` over two scrapes gives usable p50/p95/p99.
const LAG_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03,
    0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The process's recorder, installed on first use. The projection lag is a Prometheus
/// histogram (rates and quantiles over any window); other histograms render as summaries.
///
/// The exporter spawns no upkeep task (no listener feature), so the first caller inside a
/// runtime starts one.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("reserva_projection_lag_seconds".to_owned()),
                    &LAG_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
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
