//! Cross-origin calls from browsers: an allow-list from configuration, answered by
//! `actix-cors`, and a problem document for the preflights it refuses.
//!
//! Credentials are off unless configured: a bearer token travels in `Authorization`, which
//! needs no credentials mode, and cookies are not how Reserva authenticates.

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use super::{CorsOrigins, EdgeSettings};
use crate::problem::ApiError;
use crate::{correlation, idempotency};

/// Request headers a browser may send cross-origin besides the CORS-safelisted ones.
const ALLOWED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    idempotency::HEADER,
    correlation::HEADER,
    "traceparent",
];

/// Response headers a script on another origin may read.
const EXPOSED_HEADERS: [&str; 4] = ["location", "retry-after", correlation::HEADER, "etag"];

/// How long a browser may cache a preflight's answer (seconds).
const PREFLIGHT_MAX_AGE: usize = 600;

/// `raw` as a browser sends it in `Origin`: `scheme://host[:port]`, lower case, no path.
///
/// # Errors
/// A message saying what is wrong with it.
pub fn normalize_origin(raw: &str) -> Result<String, String> {
    let origin = raw.trim_end_matches('/').to_ascii_lowercase();
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("{raw:?} is not an origin (scheme://host[:port])"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("{raw:?}: the scheme must be http or https"));
    }
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if !host_ok || (!port.is_empty() && port.parse::<u16>().is_err()) {
        return Err(format!(
            "{raw:?} is not an origin (scheme://host[:port], no path)"
        ));
    }
    Ok(origin)
}

/// The CORS middleware for `settings` (with an empty allow-list it adds nothing to any
/// answer, and [`refuse_unlisted_preflights`] answers every preflight).
pub fn middleware(settings: &EdgeSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(PREFLIGHT_MAX_AGE);
    cors = match &settings.cors_origins {
        CorsOrigins::Any => cors.allow_any_origin().send_wildcard(),
        CorsOrigins::Listed(origins) => origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin)),
    };
    if settings.cors_credentials {
        cors = cors.supports_credentials();
    }
    cors
}

/// Whether `origin` may call from a browser under `settings`.
fn allowed(settings: &EdgeSettings, origin: &str) -> bool {
    match &settings.cors_origins {
        CorsOrigins::Any => true,
        CorsOrigins::Listed(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
    }
}

/// Answers a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an
/// origin off the allow-list with `403 cors_origin_refused`, and turns `actix-cors`'s own
/// refusals (a method or header it does not allow) into `400 cors_preflight_refused`: every
/// error is a problem document. Other requests pass untouched — a browser enforces CORS on
/// them by the absence of `Access-Control-Allow-Origin`.
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn refuse_unlisted_preflights(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("").to_owned());
    let (Some(origin), true) = (origin, preflight) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let settings = req.app_data::<web::Data<EdgeSettings>>().cloned();
    if !settings.is_some_and(|s| allowed(&s, &origin)) {
        let refusal = ApiError::refused(
            "cors_origin_refused",
            format!("origin {origin:?} may not call this API from a browser"),
        );
        return Ok(req.into_response(refusal.error_response()));
    }
    let response = next.call(req).await?;
    if !response.status().is_client_error() {
        return Ok(response.map_into_boxed_body());
    }
    let (req, res) = response.into_parts();
    let detail = actix_web::body::to_bytes(res.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let refusal = ApiError::bad_request("cors_preflight_refused", detail);
    Ok(ServiceResponse::new(req, refusal.error_response()))
}

#[cfg(test)]
mod tests {
    use super::normalize_origin;

    #[test]
    fn origins_are_normalized_and_paths_refused() {
        assert_eq!(
            normalize_origin("HTTPS://Shop.Example/").unwrap(),
            "https://shop.example"
        );
        assert_eq!(
            normalize_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert!(normalize_origin("shop.example").is_err());
        assert!(normalize_origin("ftp://shop.example").is_err());
        assert!(normalize_origin("https://shop.example/path").is_err());
        assert!(normalize_origin("https://shop.example:99999").is_err());
    }
}
