//! Extractors whose rejections are problem+json, and the request context commands carry.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use commands::CommandMetadata;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use tracing_actix_web::RequestId;

use crate::auth::Access;
use crate::correlation::CorrelationId;
use crate::problem::{ApiError, FieldError};

/// Largest command body accepted; real commands are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body parsed into `T`, refusing oversize bodies, other media types, malformed JSON
/// and wrong types — each as problem+json naming the offending field.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload, true);
        Box::pin(async move { parse(&body.await?.bytes).map(ValidJson) })
    }
}

/// Like [`ValidJson`] for commands whose every field is optional: a request with no body at
/// all (whatever its content type) gives `None`; any other body is checked as [`ValidJson`]
/// checks it.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload, false);
        Box::pin(async move {
            let body = body.await?;
            if body.bytes.is_empty() {
                Ok(OptionalJson(None))
            } else if !body.is_json {
                Err(ApiError::unsupported_media_type())
            } else {
                parse(&body.bytes).map(|value| OptionalJson(Some(value)))
            }
        })
    }
}

/// A request body read in full.
struct Body {
    /// Whether the declared media type is JSON.
    is_json: bool,
    bytes: Vec<u8>,
}

/// Reads the body, refusing oversize ones; with `require_json`, refuses other media types
/// before reading anything.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    require_json: bool,
) -> Pin<Box<dyn Future<Output = Result<Body, ApiError>>>> {
    let is_json = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|m| m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if require_json && !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?;
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Body { is_json, bytes })
    })
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Syntax first (including trailing garbage), then shape, so each gets its own code.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?;
    // serde accepts a struct written as an array; a command body is always an object.
    if !value.is_object() {
        return Err(ApiError::validation(vec![FieldError::new(
            "$",
            "the body must be a JSON object",
        )]));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_position(e.inner());
        // A missing field is reported at its parent; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (".", None) => "$".to_owned(),
            (_, Some(name)) => format!("{path}.{name}"),
            (_, None) => path,
        };
        ApiError::validation(vec![FieldError::new(field, message)])
    })
}

/// serde_json appends "at line 1 column 42"; the field path already says where.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Who is asking and under which correlation id; becomes the events' metadata.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// From `X-Correlation-ID`, or new.
    pub correlation_id: String,
    /// This request's id (also on every log line of the request).
    pub request_id: String,
    /// The token's subject; `anonymous` with auth off.
    pub actor: String,
    /// What the caller may do.
    pub access: Access,
    /// The W3C `traceparent` of the request's span (a child of the caller's `traceparent`
    /// header when it sent a valid one), stored with the events so their handlers continue
    /// the trace.
    pub traceparent: Option<String>,
}

impl RequestContext {
    /// The metadata a command issued by this request carries.
    pub fn metadata(&self) -> CommandMetadata {
        CommandMetadata::for_request(
            self.correlation_id.clone(),
            self.request_id.clone(),
            self.actor.clone(),
        )
        .with_traceparent(self.traceparent.clone())
    }
}

impl FromRequest for RequestContext {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let extensions = req.extensions();
        let request_id = extensions
            .get::<RequestId>()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), ToString::to_string);
        let correlation_id = extensions
            .get::<CorrelationId>()
            .map_or_else(|| request_id.clone(), |c| c.0.clone());
        let traceparent = extensions
            .get::<tracing_actix_web::RootSpan>()
            .and_then(|span| feed::trace_context::traceparent_of(span));
        let access = Access::of(req);
        std::future::ready(Ok(Self {
            correlation_id,
            request_id,
            actor: access.actor(),
            access,
            traceparent,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        quantity: u32,
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        sku: String,
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = parse::<Body>(br#"{"quantity":"3","items":[]}"#).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        let err = parse::<Body>(br#"{"quantity":3,"items":[{"sku":1}]}"#).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert!(format!("{err:?}").contains("items[0].sku"));
    }

    #[test]
    fn broken_json_is_malformed() {
        assert_eq!(
            parse::<Body>(b"{\"quantity\":").unwrap_err().code(),
            "malformed_json"
        );
        assert_eq!(
            parse::<Body>(br#"{"quantity":3,"items":[]} trailing"#)
                .unwrap_err()
                .code(),
            "malformed_json"
        );
    }
}
