//! Spans and metrics of handled events.

use crate::{FeedEvent, trace_context};

/// One span per traced event handed to a handler, each a child of the span that issued the
/// event (its stored `traceparent`), so a projector's work on an order shows in the order's
/// trace. They stay open while the events are handled; a batch applies its events together,
/// so they share that time. Untraced events get none (no trace to join).
pub(crate) fn event_spans(name: &str, events: &[FeedEvent]) -> Vec<tracing::Span> {
    events
        .iter()
        .filter_map(|event| {
            let traceparent = trace_context::traceparent_in(&event.metadata)?;
            let span = tracing::info_span!(
                "subscription event",
                subscription = %name,
                event = %event.event_type,
                position = event.position(),
            );
            trace_context::continue_trace(&span, Some(&traceparent));
            Some(span)
        })
        .collect()
}

/// Commit-to-visible lag of the events just handled: from their append's transaction start
/// (`recorded_at`) to this commit, as the read side's clients experience it.
pub(crate) fn record_lag(name: &str, events: &[FeedEvent]) {
    if events.is_empty() {
        return;
    }
    let now = chrono::Utc::now();
    let histogram =
        metrics::histogram!("reserva_projection_lag_seconds", "subscription" => name.to_owned());
    for event in events {
        histogram.record((now - event.recorded_at).as_seconds_f64().max(0.0));
    }
    metrics::counter!("reserva_subscription_events_total", "subscription" => name.to_owned())
        .increment(events.len() as u64);
}

/// A handler refused an event (one try).
pub(crate) fn record_failure(name: &str) {
    metrics::counter!("reserva_subscription_failures_total", "subscription" => name.to_owned())
        .increment(1);
}
