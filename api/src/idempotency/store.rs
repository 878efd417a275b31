//! The `idempotency_keys` table: claiming a key, storing the answer, releasing a claim.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use sqlx::PgPool;
use std::sync::atomic::{AtomicI64, Ordering};
use uuid::Uuid;

use super::{LEASE, REPLAYED};
use crate::problem::ApiError;

/// Claims a key unless it is held by a live claim or a stored answer younger than 24 h; an
/// in-flight claim whose lease lapsed is taken over by the same request only.
const CLAIM: &str = "\
    INSERT INTO idempotency_keys \
        (scope, key, method, target, body_sha256, claim_id, locked_until) \
    VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) \
    ON CONFLICT (scope, key) DO UPDATE SET \
        method = EXCLUDED.method, target = EXCLUDED.target, \
        body_sha256 = EXCLUDED.body_sha256, claim_id = EXCLUDED.claim_id, \
        locked_until = EXCLUDED.locked_until, status = NULL, content_type = NULL, \
        location = NULL, response_body = NULL, created_at = now(), completed_at = NULL \
    WHERE idempotency_keys.created_at <= now() - interval '24 hours' \
       OR (idempotency_keys.status IS NULL AND idempotency_keys.locked_until <= now() \
           AND idempotency_keys.method = EXCLUDED.method \
           AND idempotency_keys.target = EXCLUDED.target \
           AND idempotency_keys.body_sha256 = EXCLUDED.body_sha256) \
    RETURNING claim_id";

const LOOK_UP: &str = "\
    SELECT method, target, body_sha256, status, content_type, location, response_body, \
           GREATEST(1, CEIL(EXTRACT(EPOCH FROM locked_until - now())))::bigint AS retry_after \
    FROM idempotency_keys WHERE scope = $1 AND key = $2";

const COMPLETE: &str = "\
    UPDATE idempotency_keys SET status = $4, content_type = $5, location = $6, \
        response_body = $7, completed_at = now() \
    WHERE scope = $1 AND key = $2 AND claim_id = $3";

const RELEASE: &str =
    "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND claim_id = $3";

/// Bounded, so one purge never holds many rows at once; the next one takes the rest.
const PURGE: &str = "\
    DELETE FROM idempotency_keys WHERE ctid IN (\
        SELECT ctid FROM idempotency_keys \
        WHERE created_at <= now() - interval '24 hours' LIMIT 1000)";

/// One keyed request.
pub(super) struct Keyed {
    pub(super) scope: String,
    pub(super) key: String,
    pub(super) method: String,
    pub(super) target: String,
    pub(super) body_sha256: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct Stored {
    method: String,
    target: String,
    body_sha256: Vec<u8>,
    status: Option<i16>,
    content_type: Option<String>,
    location: Option<String>,
    response_body: Option<Vec<u8>>,
    retry_after: i64,
}

pub(super) enum Claimed {
    /// This request runs the command under this claim id.
    Ours(Uuid),
    /// The stored answer of the first request.
    Stored(HttpResponse),
}

pub(super) async fn claim(pool: &PgPool, keyed: &Keyed) -> Result<Claimed, ApiError> {
    // A claim can vanish between the insert and the look-up (its request failed and released
    // it); then the insert is tried again.
    for _ in 0..3 {
        let claim_id = Uuid::new_v4();
        let claimed: Option<Uuid> = sqlx::query_scalar(CLAIM)
            .bind(&keyed.scope)
            .bind(&keyed.key)
            .bind(&keyed.method)
            .bind(&keyed.target)
            .bind(&keyed.body_sha256)
            .bind(claim_id)
            .bind(LEASE.as_secs_f64())
            .fetch_optional(pool)
            .await?;
        if claimed.is_some() {
            return Ok(Claimed::Ours(claim_id));
        }
        let stored: Option<Stored> = sqlx::query_as(LOOK_UP)
            .bind(&keyed.scope)
            .bind(&keyed.key)
            .fetch_optional(pool)
            .await?;
        if let Some(stored) = stored {
            return answer(keyed, stored).map(Claimed::Stored);
        }
    }
    Err(in_progress(1))
}

/// What a request gets when the key is already taken.
fn answer(keyed: &Keyed, stored: Stored) -> Result<HttpResponse, ApiError> {
    if stored.method != keyed.method
        || stored.target != keyed.target
        || stored.body_sha256 != keyed.body_sha256
    {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this idempotency key was used for a different request",
        ));
    }
    let Some(status) = stored
        .status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return Err(in_progress(u64::try_from(stored.retry_after).unwrap_or(1)));
    };
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = stored.content_type {
        response.insert_header((header::CONTENT_TYPE, content_type));
    }
    if let Some(location) = stored.location {
        response.insert_header((header::LOCATION, location));
    }
    response.insert_header((
        HeaderName::from_static(REPLAYED),
        HeaderValue::from_static("true"),
    ));
    Ok(response.body(stored.response_body.unwrap_or_default()))
}

fn in_progress(retry_after: u64) -> ApiError {
    ApiError::conflict(
        "idempotency_key_in_progress",
        "a request with this idempotency key is still running; retry shortly",
    )
    .with_retry_after(retry_after)
}

/// Stores the final answer of the request holding `claim`.
pub(super) async fn complete(
    pool: &PgPool,
    keyed: &Keyed,
    claim: Uuid,
    status: StatusCode,
    (content_type, location): (Option<String>, Option<String>),
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(COMPLETE)
        .bind(&keyed.scope)
        .bind(&keyed.key)
        .bind(claim)
        .bind(i16::try_from(status.as_u16()).unwrap_or(i16::MAX))
        .bind(content_type)
        .bind(location)
        .bind(body)
        .execute(pool)
        .await
        .map(drop)
}

pub(super) async fn release(pool: &PgPool, keyed: &Keyed, claim: Uuid) {
    let released = sqlx::query(RELEASE)
        .bind(&keyed.scope)
        .bind(&keyed.key)
        .bind(claim)
        .execute(pool)
        .await;
    if let Err(error) = released {
        tracing::warn!(%error, "an idempotency claim could not be released; it lapses with its lease");
    }
}

/// Deletes answers older than 24 h, at most once a minute per process, off the request's path.
/// (The claim already treats them as absent; this only keeps the table small.)
pub(super) fn purge_now_and_then(pool: &PgPool) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp();
    let last = LAST.load(Ordering::Relaxed);
    if now - last < 60
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(error) = sqlx::query(PURGE).execute(&pool).await {
            tracing::warn!(%error, "expired idempotency keys could not be purged");
        }
    });
}
