//! W3C trace context across the asynchronous hops: a request's span is stored with the events
//! it caused (`traceparent` in their metadata), and whoever handles those events later (a saga,
//! a projector) opens its span as a child of it, so one order is one trace.
//!
//! Spans get real ids from the OpenTelemetry layer the process installs (see
//! `api::telemetry`), whether or not spans are exported; without that layer every function
//! here answers `None` or does nothing, and commands simply carry no `traceparent`.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The metadata key (and HTTP header) holding a W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span` (`00-<trace id>-<span id>-<flags>`); `None` when the span has
/// no OpenTelemetry context (disabled, or no OpenTelemetry layer installed).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the span the caller runs in.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Makes the span `traceparent` names the parent of `span`, which must not have been entered
/// yet. An absent or malformed value changes nothing: `span` then follows its `tracing`
/// parent, or starts a new trace.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails only for a disabled span or one already started: nothing to continue then.
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` stored in an event's serialized metadata, if any.
pub fn traceparent_in(metadata: &str) -> Option<String> {
    // Most events of a busy store carry one, but old events and system work do not: skip the
    // parse when the key cannot be there.
    if !metadata.contains(TRACEPARENT) {
        return None;
    }
    serde_json::from_str::<HashMap<String, serde_json::Value>>(metadata)
        .ok()?
        .remove(TRACEPARENT)?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_from_metadata() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let json = format!(r#"{{"actor":"a","traceparent":"{tp}"}}"#);
        assert_eq!(traceparent_in(&json).as_deref(), Some(tp));
        assert_eq!(traceparent_in(r#"{"actor":"a"}"#), None);
        assert_eq!(traceparent_in("not json traceparent"), None);
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_traceparent() {
        let span = tracing::info_span!("test");
        continue_trace(&span, Some("garbage"));
        assert_eq!(traceparent_of(&span), None);
    }
}
