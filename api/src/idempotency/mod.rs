//! `Idempotency-Key`: a command retried with the same key runs once.
//!
//! On every `POST` of the route table's guarded scopes (`/api/v1`, `/admin`, which wrap this
//! middleware), a request carrying `Idempotency-Key`
//! (1 to 255 printable ASCII characters, else 400 `invalid_idempotency_key`) claims the key
//! in `idempotency_keys` with one atomic `INSERT … ON CONFLICT` before the handler runs. Keys
//! are scoped by caller (the token subject, or `anonymous` without one), so two callers never
//! see each other's responses. The request is identified by its method, target (path and
//! query) and the SHA-256 of its body:
//!
//! - key unknown (or older than 24 h): the command runs; a 2xx or 4xx answer is stored and
//!   the same request within 24 h gets it back, byte for byte, with `idempotent-replayed: true`
//!   and without running again;
//! - same key, different request: 422 `idempotency_key_reused`, nothing runs;
//! - same key while the first request still runs: 409 `idempotency_key_in_progress` with
//!   `retry-after`.
//!
//! Answers a retry could change are not stored, so the retry runs: 5xx (the store was down),
//! 429, and 409 `concurrency_conflict` (the bus gave up on a busy aggregate). Their claim is
//! deleted at once.
//!
//! A claim holds a lease of [`LEASE`]. If the process dies while running the command the
//! claim stays in flight until the lease ends (retries get 409), and then the next retry runs
//! the command again: whether the first one committed cannot be known, and the command
//! handlers' own idempotency (cancel, the sagas) is the backstop there.

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

use crate::auth::Caller;
use crate::extract::MAX_BODY_BYTES;
use crate::problem::ApiError;
use crate::state::AppState;

mod store;

use store::{Claimed, Keyed, claim, purge_now_and_then, release};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Set to `true` on a stored answer given back instead of running the command.
pub const REPLAYED: &str = "idempotent-replayed";

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// How long a claim protects a running command; far longer than any command takes (the
/// pool's acquire timeout and the bus's bounded retries end one within seconds).
pub const LEASE: Duration = Duration::from_secs(60);

/// Middleware: runs a keyed command once and replays its answer. Must run inside the auth
/// middleware (it reads the [`Caller`]) and inside the rate limiters (a refused request must
/// not claim a key).
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let pool = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.pool.clone());
    let (Some(pool), true) = (pool, is_command(&req)) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let key = match key_of(&req) {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Err(error) => return Ok(req.error_response(error)),
    };
    let payload = req.take_payload();
    let body = match read_body(&req, payload).await {
        Ok(body) => body,
        Err(error) => return Ok(req.error_response(error)),
    };
    let keyed = Keyed {
        scope: scope_of(&req),
        key,
        method: req.method().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned()),
        body_sha256: Sha256::digest(&body).to_vec(),
    };
    purge_now_and_then(&pool);
    let claim = match claim(&pool, &keyed).await {
        Ok(Claimed::Ours(claim)) => claim,
        Ok(Claimed::Stored(response)) => {
            metrics::counter!("reserva_idempotent_replays_total").increment(1);
            return Ok(req.into_response(response));
        }
        Err(error) => return Ok(req.error_response(error)),
    };
    req.set_payload(Payload::from(body));
    let response = match next.call(req).await {
        Ok(response) => response,
        Err(error) => {
            release(&pool, &keyed, claim).await;
            return Err(error);
        }
    };
    finish(&pool, &keyed, claim, response).await
}

/// A `POST` (the middleware only wraps the guarded scopes; webhooks have their own
/// de-duplication).
fn is_command(req: &ServiceRequest) -> bool {
    req.method() == actix_web::http::Method::POST
}

/// The key, if the request has one.
fn key_of(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("{HEADER} must be one value of 1 to {MAX_KEY_LEN} printable ASCII characters"),
        )
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_KEY_LEN
        || !bytes.iter().all(|b| (b' '..=b'~').contains(b))
    {
        return Err(invalid());
    }
    // Checked to be ASCII just above.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// Whose keys these are: the token subject, or `anonymous` without a verified token.
pub fn scope_of(req: &ServiceRequest) -> String {
    req.extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous".to_owned(), |c| format!("sub:{}", c.subject))
}

/// Reads the body as the JSON extractors would, refusing the same oversize bodies.
async fn read_body(req: &ServiceRequest, mut payload: Payload) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Stores the answer (or releases the claim when a retry should run again) and hands the
/// answer on.
async fn finish(
    pool: &PgPool,
    keyed: &Keyed,
    claim: Uuid,
    response: ServiceResponse<impl MessageBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (req, response) = response.into_parts();
    let (response, body) = response.into_parts();
    let body = match actix_web::body::to_bytes(body).await {
        Ok(body) => body,
        Err(error) => {
            release(pool, keyed, claim).await;
            let error = UnreadableResponse(error.into().to_string());
            return Ok(ServiceResponse::new(
                req,
                actix_web::ResponseError::error_response(&ApiError::internal(error)),
            ));
        }
    };
    let status = response.status();
    if is_final(status, &body) {
        let text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let stored = store::complete(
            pool,
            keyed,
            claim,
            status,
            (text(header::CONTENT_TYPE), text(header::LOCATION)),
            body.as_ref(),
        )
        .await;
        if let Err(error) = stored {
            // The command ran; the client gets its answer. A retry within the lease gets 409,
            // after it runs again.
            tracing::warn!(%error, "the idempotent response could not be stored");
        }
    } else {
        release(pool, keyed, claim).await;
    }
    Ok(ServiceResponse::new(
        req,
        response.set_body(BoxBody::new(body)),
    ))
}

/// Whether an answer is the request's answer for good, or one a retry could change.
fn is_final(status: StatusCode, body: &[u8]) -> bool {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
        return false;
    }
    if status == StatusCode::CONFLICT {
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
        if code.as_deref() == Some("concurrency_conflict") {
            return false;
        }
    }
    status.is_success() || status.is_client_error()
}

/// The handler's answer could not be read back to store it.
#[derive(Debug, thiserror::Error)]
#[error("the response body could not be read: {0}")]
struct UnreadableResponse(String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use actix_web::test::TestRequest;

    #[test]
    fn keys_are_scoped_by_caller() {
        let anonymous = TestRequest::default().to_srv_request();
        let alice = TestRequest::default().to_srv_request();
        alice.extensions_mut().insert(Caller {
            subject: "alice".to_owned(),
            role: Role::Customer,
        });
        assert_eq!(scope_of(&anonymous), "anonymous");
        assert_eq!(scope_of(&alice), "sub:alice");
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        let with = |v: &str| {
            TestRequest::default()
                .insert_header((HEADER, v))
                .to_srv_request()
        };
        assert_eq!(
            key_of(&with("order-1")).unwrap().as_deref(),
            Some("order-1")
        );
        assert!(key_of(&with(&"k".repeat(255))).unwrap().is_some());
        assert!(key_of(&with(&"k".repeat(256))).is_err());
        assert!(key_of(&with("")).is_err());
        assert!(
            key_of(&TestRequest::default().to_srv_request())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn transient_answers_are_not_kept() {
        assert!(is_final(StatusCode::ACCEPTED, b"{}"));
        assert!(is_final(StatusCode::UNPROCESSABLE_ENTITY, b"{}"));
        assert!(is_final(
            StatusCode::CONFLICT,
            br#"{"code":"illegal_transition"}"#
        ));
        assert!(!is_final(
            StatusCode::CONFLICT,
            br#"{"code":"concurrency_conflict"}"#
        ));
        assert!(!is_final(StatusCode::SERVICE_UNAVAILABLE, b"{}"));
        assert!(!is_final(StatusCode::TOO_MANY_REQUESTS, b"{}"));
    }
}
