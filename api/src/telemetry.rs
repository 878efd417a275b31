//! Structured logs and distributed traces.
//!
//! Logs: human-readable by default, JSON with `LOG_FORMAT=json`, filtered by `RUST_LOG`.
//!
//! Traces: every span also goes through an OpenTelemetry layer, so spans carry real W3C trace
//! and span ids whether or not anything is exported. That is what lets a request's
//! `traceparent` be accepted, answered, stored in event metadata and continued by sagas and
//! projectors (see `feed::trace_context`). Spans are exported over OTLP/HTTP (protobuf)
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_actix_web::RootSpan;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

/// The `service.name` of exported spans.
pub const SERVICE_NAME: &str = "reserva";

/// Keeps the tracer provider alive; dropping it flushes spans still waiting for export and
/// stops tracing (spans created afterwards have no ids).
#[must_use = "dropping the guard stops tracing"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Blocks until the batch is sent (or the exporter's timeout); nothing to do on failure
        // but say so, the process is ending.
        if let Err(error) = self.provider.shutdown() {
            eprintln!("flushing spans failed: {error}");
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// Nowhere: spans still get ids, so context propagates, but nothing leaves the process.
    Off,
    /// OTLP/HTTP to the endpoint the standard `OTEL_EXPORTER_OTLP_*` variables name.
    FromEnv,
    /// OTLP/HTTP to this base URL (`/v1/traces` is appended).
    Endpoint(String),
}

/// Installs the global subscriber for the `reserva` binary: logs to stderr, and spans to an
/// OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// is set (off otherwise). Filter from `RUST_LOG` (default `info`, with PostgreSQL notices
/// such as "table does not exist, skipping" kept out of the way).
///
/// Request handlers run inside tracing-actix-web's request span, whose `request_id` field is
/// printed on every line logged while serving the request.
pub fn init() -> TelemetryGuard {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()));
    install(
        true,
        if configured {
            Export::FromEnv
        } else {
            Export::Off
        },
    )
}

/// Installs the global subscriber: the OpenTelemetry layer always, the log layer when `logs`.
/// A second install in the same process (tests) leaves the first in place; the returned guard
/// then owns a provider nobody uses.
pub fn install(logs: bool, export: Export) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = provider(export);
    let tracer = provider.tracer(SERVICE_NAME);
    // Spans down to INFO (the request, saga and projector spans are INFO); only warnings and
    // errors become span events, ordinary log lines would only bloat exported spans.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter::filter_fn(|meta| {
            let floor = if meta.is_span() {
                Level::INFO
            } else {
                Level::WARN
            };
            *meta.level() <= floor
        }));
    let fmt = logs.then(|| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
        let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
        let layer = tracing_subscriber::fmt::layer()
            .with_span_events(FmtSpan::NONE)
            .with_writer(std::io::stderr);
        if json {
            layer
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(filter)
                .boxed()
        } else {
            layer.with_filter(filter).boxed()
        }
    });
    // A second init (tests) fails harmlessly.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    TelemetryGuard { provider }
}

/// A provider that samples what its parent sampled (everything, for new traces) and exports
/// only when asked. An exporter that cannot be built is reported and left out: tracing must
/// never stop the service.
fn provider(export: Export) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build());
    let exporter = match export {
        Export::Off => return builder.build(),
        Export::FromEnv => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build(),
        Export::Endpoint(base) => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
            .build(),
    };
    match exporter {
        // The batch processor sends from a thread of its own, with reqwest's blocking client.
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(error) => {
            eprintln!("OTLP span export disabled: {error}");
            builder.build()
        }
    }
}

/// Answers every request with a `traceparent` header naming its request span, so a caller
/// can find the request's trace (whether it sent a `traceparent` or a new trace was started).
///
/// Must run inside `TracingLogger`, which creates the span.
///
/// # Errors
/// Only those of the wrapped service.
pub async fn traceparent_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let traceparent = req
        .extensions()
        .get::<RootSpan>()
        .and_then(|span| feed::trace_context::traceparent_of(span))
        .and_then(|value| HeaderValue::from_str(&value).ok());
    let mut response = next.call(req).await?;
    if let Some(value) = traceparent {
        response.headers_mut().insert(
            HeaderName::from_static(feed::trace_context::TRACEPARENT),
            value,
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A one-request OTLP/HTTP collector: answers 200 and hands back the request line and body.
    fn fake_collector() -> (String, std::thread::JoinHandle<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            (request_line, body)
        });
        (url, received)
    }

    #[test]
    fn spans_are_exported_over_otlp_http_and_flushed_on_shutdown() {
        // Arrange
        let (url, received) = fake_collector();
        let guard = TelemetryGuard {
            provider: provider(Export::Endpoint(url)),
        };
        let layer = tracing_opentelemetry::layer().with_tracer(guard.provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);

        // Act
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("collector probe");
            assert!(feed::trace_context::traceparent_of(&span).is_some());
        });
        drop(guard);

        // Assert
        let (request_line, body) = received.join().unwrap();
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "{request_line}"
        );
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("collector probe"), "{body}");
        assert!(body.contains(SERVICE_NAME), "{body}");
    }
}
