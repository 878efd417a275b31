//! The service's own periodic verification of every read model (`RESERVA_VERIFY__INTERVAL_SECS`),
//! so a model that drifted from the events is found within minutes, not by a customer.

use chrono::{DateTime, Utc};
use feed::locks;
use projections::catalog;
use projections::verify::{self, Difference, Report};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The latest verify of each projection run by this process (scheduled or over HTTP), as
/// `GET /admin/projections` shows it.
#[derive(Debug, Clone, Default)]
pub struct Verifications {
    latest: Arc<Mutex<HashMap<&'static str, LastVerify>>>,
}

/// One projection's latest verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LastVerify {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Rows that differed from the fold of the events.
    pub differences: usize,
    /// The checkpoint (global position) it folded up to.
    pub position: i64,
}

impl Verifications {
    /// Records `report`.
    pub fn record(&self, report: &Report) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.insert(
            report.projection,
            LastVerify {
                at: Utc::now(),
                differences: report.differences.len(),
                position: report.checkpoint.global_position,
            },
        );
    }

    /// The latest verify of `name`, if this process ran one.
    pub fn latest(&self, name: &str) -> Option<LastVerify> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.get(name).copied()
    }
}

/// The advisory lock that lets one instance at a time verify.
const LOCK: &str = "reserva.verify.";

/// Verifies every projection every `interval` until `stop` is cancelled, recording each
/// outcome in `verifications`.
pub async fn run(
    pool: PgPool,
    interval: Duration,
    verifications: Verifications,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
        // A verify is read-only: dropping it midway on a stop leaves nothing behind.
        tokio::select! {
            () = round(&pool, &verifications) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One verification of every projection, unless another instance is doing it.
async fn round(pool: &PgPool, verifications: &Verifications) {
    let mut conn = match locks::dedicated_connection(pool, "verify schedule").await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "scheduled verify: no connection");
            return;
        }
    };
    match locks::try_session_lock(&mut conn, LOCK, "all").await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%error, "scheduled verify: could not take its lock");
            return;
        }
    }
    for projection in catalog::all() {
        let (progress, _) = watch::channel(verify::Progress::default());
        let result = verify::verify(pool, projection, false, &progress).await;
        if let Ok(report) = &result {
            verifications.record(report);
        }
        match result {
            Ok(report) if report.is_clean() => tracing::debug!(
                projection = report.projection,
                rows = report.rows,
                "read model equals the events"
            ),
            Ok(report) => {
                let (missing, extra, differing) = report.counts();
                let first: Vec<&str> = report
                    .differences
                    .iter()
                    .take(10)
                    .map(Difference::id)
                    .collect();
                tracing::error!(
                    projection = report.projection,
                    missing,
                    extra,
                    differing,
                    first = ?first,
                    "read model differs from the events: see `reserva projections verify {}`",
                    report.projection
                );
            }
            Err(error) => {
                tracing::warn!(projection = projection.name(), %error, "scheduled verify failed")
            }
        }
    }
    locks::release(conn).await;
}
