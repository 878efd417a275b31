//! One try of handing events to a handler: the single path shared by the runner's batches,
//! its isolation of a failing event, and the retry of dead letters.

use sqlx::PgConnection;

use crate::handler::{Handler, HandlerError};
use crate::{FeedEvent, telemetry};

/// Hands `events` (all wanted, in feed order) to `handler` on `conn`, which must be inside a
/// transaction or savepoint that the caller commits or rolls back, inside a span per traced
/// event. A refusal is counted in `reserva_subscription_failures_total`.
///
/// # Errors
/// The handler's [`HandlerError`].
pub(crate) async fn attempt(
    conn: &mut PgConnection,
    handler: &dyn Handler,
    events: &[FeedEvent],
) -> Result<(), HandlerError> {
    if events.is_empty() {
        return Ok(());
    }
    let _spans = telemetry::event_spans(handler.name(), events);
    let result = handler.handle(conn, events).await;
    if matches!(&result, Err(error) if !error.is_transient()) {
        telemetry::record_failure(handler.name());
    }
    result
}
