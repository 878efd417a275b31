//! Headers every answer carries, and which answers are compressed.
//!
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//!   `X-Frame-Options: DENY` and a `Content-Security-Policy` on everything: the API serves
//!   JSON, which no browser should sniff into HTML, frame or load anything from.
//! - `/docs` (Swagger UI) gets a policy of its own that lets it load its scripts and styles
//!   from this server and nothing from anywhere else.
//! - `Strict-Transport-Security` only on answers to requests that came over TLS (directly or
//!   as a proxy says in `Forwarded`/`X-Forwarded-Proto`): over plain HTTP browsers ignore it,
//!   and a local development server must not pin `localhost` to HTTPS.
//!
//! Compression is `actix-web`'s `Compress` (gzip and brotli, negotiated by `Accept-Encoding`);
//! [`keep_small_plain`] runs inside it and keeps bodies under the threshold, and event streams,
//! as they are.

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use super::EdgeSettings;

/// For JSON answers: nothing may be loaded, nothing may frame them.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// For Swagger UI: its own scripts, styles (it sets inline styles), images (inline SVG icons)
/// and the OpenAPI document from this server; no plugin, no framing, no form posts elsewhere.
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' \
     'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Two years, with subdomains: what the HSTS preload list asks for.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Marks the answers that must not be compressed with `Content-Encoding: identity`, which
/// `Compress` leaves alone; [`secure`] removes the mark again on the way out.
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn keep_small_plain(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let min = req
        .app_data::<web::Data<EdgeSettings>>()
        .map_or(1024, |s| s.compress_min_bytes);
    let mut response = next.call(req).await?;
    let small = matches!(response.response().body().size(), BodySize::Sized(n) if n < min);
    let stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if small || stream {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    Ok(response)
}

/// Adds the security headers and drops the `identity` mark of [`keep_small_plain`].
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn secure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let docs = req.path() == "/docs" || req.path().starts_with("/docs/");
    let tls = req.connection_info().scheme() == "https";
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e == "identity")
    {
        headers.remove(header::CONTENT_ENCODING);
    }
    let policy = if docs { DOCS_POLICY } else { API_POLICY };
    let mut set = |name: HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::CONTENT_SECURITY_POLICY, policy);
    if tls {
        set(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    Ok(response)
}
