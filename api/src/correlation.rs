//! The correlation id of the request being served, reachable from error rendering.
//!
//! `ResponseError::error_response` has no access to the request, yet every problem body must
//! carry the correlation id; a task-local set by a middleware around each request bridges that.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use uuid::Uuid;

/// Header clients use to tie their requests to ours.
pub const HEADER: &str = "x-correlation-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The correlation id of one request.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// The current request's correlation id, if called while serving one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Accepts a client's id if it is short printable ASCII; anything else is replaced, not
/// rejected, so a bad header never costs a request.
fn from_request(req: &ServiceRequest) -> String {
    req.headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

/// Middleware: picks the id, exposes it to handlers and errors, echoes it on the response.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = from_request(&req);
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let mut response = CURRENT.scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(response)
}
