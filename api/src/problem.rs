//! The one place where failures become HTTP: `application/problem+json` (RFC 9457).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use commands::CommandError;
use commands::audit::history::ReplayError;
use domain::{DomainError, RejectionKind};
use projections::queries::QueryError;
use projections::rebuild::RebuildError;
use projections::verify::VerifyError;
use projections::wait::WaitError;
use serde::Serialize;
use std::fmt;

use crate::correlation;

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `items[0].quantity`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way a request can fail, each with a stable `code` clients can branch on.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    /// Extra response headers (`WWW-Authenticate` on a 401, `retry-after` on a 429).
    headers: Vec<(header::HeaderName, String)>,
    /// Logged, never sent: the cause chain of an unexpected failure.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            source: None,
        }
    }

    /// 400: input that failed validation, with every field error found.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "the request has invalid fields",
            )
        }
    }

    /// 400 with a specific code, e.g. `malformed_json`.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401: no usable bearer token (`token_missing`, `token_invalid`, `token_expired`, and for
    /// an identity provider's tokens `token_wrong_issuer`, `token_wrong_audience`,
    /// `token_key_unknown`). Carries
    /// the RFC 6750 challenge, with `error="invalid_token"` when a token was sent.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let challenge = if code == "token_missing" {
            r#"Bearer realm="reserva""#.to_owned()
        } else {
            // The detail is ours (no token text in it); quotes would break the header syntax.
            format!(
                r#"Bearer realm="reserva", error="invalid_token", error_description="{}""#,
                detail.replace('"', "'")
            )
        };
        Self {
            headers: vec![(header::WWW_AUTHENTICATE, challenge)],
            ..Self::new(StatusCode::UNAUTHORIZED, code, detail)
        }
    }

    /// 403 `forbidden`: a valid token whose role or subject does not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 403 with a specific code: refused for what the request is, not who sent it (e.g. a
    /// CORS preflight from an origin not on the allow-list).
    pub fn refused(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 404.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed here",
        )
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds {limit} bytes"),
        )
    }

    /// 415.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )
    }

    /// 422: well-formed input that refers to something unusable (an unknown SKU, say).
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// 429 `rate_limited`: the client spent its budget; `retry_after` says when the window
    /// resets.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
            .with_retry_after(retry_after)
    }

    /// Tells the client to retry after `seconds` (the `retry-after` header).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.headers
            .push((header::RETRY_AFTER, seconds.to_string()));
        self
    }

    /// Adds field errors to any problem.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// 503: a dependency is down; the client may retry.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the event store is unavailable; retry shortly",
            )
        }
    }

    /// 500: a bug. The cause is logged, never sent.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an unexpected error occurred",
            )
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.detail)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The body of every error answer (`application/problem+json`, RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<code with dashes>`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation-failed")]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Bad Request")]
    title: &'static str,
    /// The HTTP status.
    #[schema(minimum = 100, maximum = 599, example = 400)]
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// Stable machine code clients branch on (`validation_failed`, `insufficient_stock`, …).
    #[schema(example = "validation_failed")]
    code: &'static str,
    /// Every invalid field (only when some are).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Vec<FieldError>,
    /// The request's correlation id (from `X-Correlation-ID`, or new).
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            tracing::error!(code = self.code, error.cause_chain = ?source, "request failed");
        }
        let body = Problem {
            kind: format!("/problems/{}", self.code.replace('_', "-")),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            errors: self.errors.clone(),
            correlation_id: correlation::current(),
        };
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        for (name, value) in &self.headers {
            // A value that is not a valid header is dropped rather than failing the response.
            if let Ok(value) = header::HeaderValue::from_str(value) {
                response.insert_header((name.clone(), value));
            }
        }
        response.body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl<E: DomainError> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Rejected(e) => {
                let status = match e.kind() {
                    RejectionKind::NotFound => StatusCode::NOT_FOUND,
                    RejectionKind::Conflict => StatusCode::CONFLICT,
                    RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Self::new(status, e.code(), e.to_string())
            }
            CommandError::Conflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "concurrency_conflict",
                error.to_string(),
            ),
            CommandError::Unavailable(source) => Self {
                source: Some(source),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the event store is unavailable; retry shortly",
                )
            },
            CommandError::Internal(source) => Self {
                source: Some(source),
                ..Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an unexpected error occurred",
                )
            },
        }
    }
}

impl ApiError {
    /// 409 with a specific code (a state conflict outside any aggregate, e.g. a running rebuild).
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503 with a specific code: the answer exists but not yet; the client may retry.
    pub fn not_yet(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }
}

/// Database failures outside a command: a lost connection is the client's to retry, anything
/// else is ours.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::unavailable(error),
            _ => Self::internal(error),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Database(error) => error.into(),
            QueryError::Corrupt(..) => Self::internal(error),
            QueryError::Behind { .. } => Self::not_yet("projection_behind", error.to_string()),
        }
    }
}

impl From<WaitError> for ApiError {
    fn from(error: WaitError) -> Self {
        match error {
            WaitError::TimedOut { .. } => Self::not_yet("projection_behind", error.to_string()),
            WaitError::Parked { .. } => Self::not_yet("projection_parked", error.to_string()),
            WaitError::Database(error) => error.into(),
        }
    }
}

impl From<RebuildError> for ApiError {
    fn from(error: RebuildError) -> Self {
        match error {
            RebuildError::Unknown(_) => Self::not_found("projection_not_found", error.to_string()),
            RebuildError::AlreadyRunning(_) => Self::conflict("rebuild_running", error.to_string()),
            RebuildError::Handler { .. } => Self::internal(error),
            RebuildError::Database(error) => error.into(),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(error: VerifyError) -> Self {
        match error {
            // The store holds an event today's code cannot fold: nothing to compare against.
            VerifyError::Fold { .. } => Self::conflict("verify_failed", error.to_string()),
            VerifyError::Database(error) => error.into(),
        }
    }
}

impl From<ReplayError> for ApiError {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::UnknownType(_) => {
                Self::not_found("aggregate_type_not_found", error.to_string())
            }
            // The store holds an event today's code cannot read: `reserva replay` says which.
            ReplayError::Undecodable { .. } => {
                Self::conflict("undecodable_event", error.to_string())
            }
            ReplayError::Database(error) => error.into(),
        }
    }
}
