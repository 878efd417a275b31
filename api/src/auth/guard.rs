//! The middleware of the guarded scopes, and what handlers learn of the caller.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use uuid::Uuid;

use super::{AuthError, Authenticator, Caller, Role};
use crate::problem::ApiError;

/// Left in the extensions when auth is off: handlers then grant full rights.
#[derive(Debug, Clone, Copy)]
struct AuthOff;

/// The `Authorization: Bearer …` token, `None` when the header is absent.
fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        ApiError::unauthorized("token_invalid", "the Authorization header is not text")
    })?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized(
            "token_invalid",
            "expected Authorization: Bearer <token>",
        )),
    }
}

/// The answer to a token that did not verify: 401 with a code per reason, except when the
/// identity provider's keys cannot be fetched, which is no fault of the token (503, retry).
fn rejection(error: &AuthError) -> ApiError {
    match error {
        AuthError::Expired => ApiError::unauthorized("token_expired", error.to_string()),
        AuthError::WrongIssuer => ApiError::unauthorized("token_wrong_issuer", error.to_string()),
        AuthError::WrongAudience => {
            ApiError::unauthorized("token_wrong_audience", error.to_string())
        }
        AuthError::KeyUnknown(_) => ApiError::unauthorized("token_key_unknown", error.to_string()),
        AuthError::ProviderUnavailable { retry_after } => {
            ApiError::not_yet("auth_provider_unavailable", error.to_string()).with_retry_after(
                (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1),
            )
        }
        _ => ApiError::unauthorized("token_invalid", error.to_string()),
    }
}

/// Middleware of the guarded scopes: with auth on, verifies the bearer token and leaves its
/// [`Caller`] in the extensions; a missing, expired or otherwise invalid token is answered 401
/// (never let through as anonymous). With auth off it only marks the request as unrestricted.
///
/// Wrap it outside everything of the scope that reads the `Caller` (rate limits,
/// idempotency keys, [`require_admin`]).
pub async fn authenticate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match verified_caller(req.request()).await {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
        }
        Ok(None) => {
            req.extensions_mut().insert(AuthOff);
        }
        Err(error) => return Ok(reject(req, &error)),
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Middleware of what only admins may do (`/admin`, stock-item writes): 403 for a customer.
/// Runs inside [`authenticate`], which has already refused anyone without a valid token.
pub async fn require_admin<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let allowed = {
        let extensions = req.extensions();
        extensions.get::<AuthOff>().is_some()
            || extensions
                .get::<Caller>()
                .is_some_and(|caller| caller.role == Role::Admin)
    };
    if !allowed {
        return Ok(reject(
            req,
            &ApiError::forbidden("this endpoint needs role admin"),
        ));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The caller of `req` by its bearer token: `Ok(None)` with auth off. Waits only when an
/// identity provider's token names a key not yet held (one fetch of its key set, shared).
///
/// # Errors
/// 401 problems for a missing, expired or invalid token, 503 `auth_provider_unavailable`
/// when the provider's keys cannot be fetched (500 without an authenticator: a wiring bug,
/// refused rather than served unchecked).
pub async fn verified_caller(req: &HttpRequest) -> Result<Option<Caller>, ApiError> {
    let Some(auth) = req.app_data::<web::Data<Authenticator>>() else {
        return Err(ApiError::internal(AuthError::Invalid(
            "no authenticator".to_owned(),
        )));
    };
    if !auth.is_on() {
        return Ok(None);
    }
    match bearer(req)? {
        Some(token) => auth
            .verify(token)
            .await
            .map(Some)
            .map_err(|e| rejection(&e)),
        None => Err(ApiError::unauthorized(
            "token_missing",
            "this endpoint needs Authorization: Bearer <token>",
        )),
    }
}

fn reject<B>(req: ServiceRequest, error: &ApiError) -> ServiceResponse<EitherBody<B>> {
    req.into_response(error.error_response())
        .map_into_right_body()
}

/// What the caller of one request may do, as handlers check it. Extracting it never fails:
/// a request that reached a handler has passed the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Auth is off: full rights.
    Unrestricted,
    /// A verified admin token: full rights.
    Admin(Caller),
    /// A verified customer token: its own orders, bookings and payments.
    Customer {
        /// The caller.
        caller: Caller,
        /// Its customer id (the token's subject).
        id: Uuid,
    },
    /// Auth is on and no token was verified (only outside the guarded scopes): no rights.
    Anonymous,
}

impl Access {
    /// The access of `req`, from what the middleware left.
    pub fn of(req: &HttpRequest) -> Self {
        let extensions = req.extensions();
        match extensions.get::<Caller>() {
            Some(caller) if caller.role == Role::Admin => Self::Admin(caller.clone()),
            Some(caller) => match Uuid::parse_str(&caller.subject) {
                Ok(id) => Self::Customer {
                    caller: caller.clone(),
                    id,
                },
                Err(_) => Self::Anonymous,
            },
            None if extensions.get::<AuthOff>().is_some() => Self::Unrestricted,
            None => Self::Anonymous,
        }
    }

    /// Who is acting, for event metadata: the token's subject, else `anonymous`.
    pub fn actor(&self) -> String {
        match self {
            Self::Admin(caller) | Self::Customer { caller, .. } => caller.subject.clone(),
            Self::Unrestricted | Self::Anonymous => "anonymous".to_owned(),
        }
    }

    /// Whether the caller may see and act on everything (auth off, or an admin).
    pub fn sees_everything(&self) -> bool {
        matches!(self, Self::Unrestricted | Self::Admin(_))
    }

    /// Whether the caller may see and act on what `customer` owns.
    pub fn may_act_for(&self, customer: Uuid) -> bool {
        match self {
            Self::Unrestricted | Self::Admin(_) => true,
            Self::Customer { id, .. } => *id == customer,
            Self::Anonymous => false,
        }
    }

    /// The customer filter a list runs with: `Some(filter)` (a customer's list is always its
    /// own), or `None` when the caller may see none of what was asked for (a customer asking for
    /// another customer's list gets an empty page, not a refusal that confirms the id).
    pub fn list_filter(&self, requested: Option<Uuid>) -> Option<Option<Uuid>> {
        match (self, requested) {
            (Self::Unrestricted | Self::Admin(_), requested) => Some(requested),
            (Self::Customer { id, .. }, None) => Some(Some(*id)),
            (Self::Customer { id, .. }, Some(requested)) => {
                (*id == requested).then_some(Some(requested))
            }
            (Self::Anonymous, _) => None,
        }
    }

    /// 403 unless the caller may act for `customer` (placing an order or booking for another
    /// customer is refused; it is the caller's own request, so nothing leaks).
    ///
    /// # Errors
    /// [`ApiError::forbidden`].
    pub fn require_acting_for(&self, customer: Uuid) -> Result<(), ApiError> {
        if self.may_act_for(customer) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "a customer places orders and bookings only for itself (customer_id must be the token's subject)",
            ))
        }
    }
}

impl FromRequest for Access {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self::of(req)))
    }
}
