//! The service's periodic signing of audit checkpoints (`RESERVA_AUDIT__KEY`): each one pins
//! down the chain heads of everything appended since the previous, so history rewritten
//! later — even with recomputed hashes — no longer matches a signature only the key can make.

use commands::audit::{self, AuditKey};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Signs a checkpoint every `interval` until `stop` is cancelled. Several instances may run
/// it: `sign` takes an advisory lock, and an empty window signs nothing.
pub async fn run(pool: PgPool, key: AuditKey, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
        // Signing is one transaction: dropped midway, it rolls back and signs nothing.
        let signed = tokio::select! {
            signed = audit::sign(&pool, &key) => signed,
            () = stop.cancelled() => return,
        };
        match signed {
            Ok(Some(signed)) => {
                metrics::counter!("reserva_audit_checkpoints_total").increment(1);
                metrics::gauge!("reserva_audit_checkpoint_position")
                    .set(signed.upto.global_position as f64);
                tracing::info!(
                    checkpoint = signed.id,
                    events = signed.events,
                    aggregates = signed.aggregates,
                    upto = %signed.upto,
                    "audit checkpoint signed"
                );
            }
            Ok(None) => tracing::debug!("audit checkpoint: nothing appended since the last"),
            Err(error) => {
                metrics::counter!("reserva_audit_checkpoint_failures_total").increment(1);
                tracing::warn!(%error, "audit checkpoint not signed");
            }
        }
    }
}
