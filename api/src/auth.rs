//! Who is calling: the verified bearer token's subject and role.
//!
//! The authentication middleware verifies the token (when auth is on) and leaves a [`Caller`]
//! in the request's extensions; the rate limiter, idempotency keys and handlers read it from
//! there, so a token is verified once per request.
//!
//! Tokens are HS256 JWTs (`sub`, `role`, `iat`, `exp`) signed with `RESERVA_AUTH__JWT_SECRET`;
//! [`mint`] makes them (`reserva token`). With auth on, every path needs a valid token except
//! the platform endpoints ([`is_exempt`]); `/admin` and stock-item writes need role `admin`
//! ([`needs_admin`]). Ownership of orders, bookings and payments is checked by the handlers
//! through [`Access`]. With auth off, every request has full rights.

use std::str::FromStr;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::configuration::AuthSettings;
use crate::problem::ApiError;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Places, reads and cancels its own orders and bookings.
    Customer,
    /// Everything, including `/admin`.
    Admin,
}

/// The verified caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: the customer id for customers.
    pub subject: String,
    /// The token's role.
    pub role: Role,
}

impl Role {
    /// The `role` claim's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = AuthError;

    fn from_str(raw: &str) -> Result<Self, AuthError> {
        match raw {
            "customer" => Ok(Self::Customer),
            "admin" => Ok(Self::Admin),
            other => Err(AuthError::UnknownRole(other.to_owned())),
        }
    }
}

/// The claims of a Reserva token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The caller: a customer id (a UUID) for customers, any name for admins.
    pub sub: String,
    /// `customer` or `admin`.
    pub role: String,
    /// Expiry, Unix seconds (required: no token lives forever).
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
}

/// Why a token could not be minted or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The role is neither `customer` nor `admin`.
    #[error("unknown role {0:?} (expected customer or admin)")]
    UnknownRole(String),
    /// A customer's subject must be its customer id, so ownership can be checked.
    #[error("a customer token's subject must be a customer id (a UUID), got {0:?}")]
    CustomerSubject(String),
    /// The subject is empty.
    #[error("the subject must not be empty")]
    EmptySubject,
    /// The lifetime is zero or too long to represent.
    #[error("the lifetime must be between 1 s and 100 years")]
    Lifetime,
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// Anything else: bad signature, another algorithm, malformed, missing claims.
    #[error("the token is invalid: {0}")]
    Invalid(String),
    /// The JWT library failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Longest lifetime [`mint`] accepts.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Makes a token for `subject` with `role`, valid for `ttl` from now, signed with the
/// configured secret (what `reserva token` prints; tests use it too).
///
/// # Errors
/// [`AuthError`] for an empty subject, a customer subject that is not a UUID, or a lifetime
/// outside 1 s – 100 years.
pub fn mint(
    settings: &AuthSettings,
    subject: &str,
    role: Role,
    ttl: Duration,
) -> Result<String, AuthError> {
    check_subject(subject, role)?;
    if ttl.as_secs() == 0 || ttl > MAX_TTL {
        return Err(AuthError::Lifetime);
    }
    let iat = chrono::Utc::now().timestamp();
    // Bounded by MAX_TTL above, so the cast and the sum cannot overflow.
    let exp = iat + ttl.as_secs() as i64;
    let claims = Claims {
        sub: subject.to_owned(),
        role: role.as_str().to_owned(),
        exp,
        iat,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.jwt_secret()),
    )
    .map_err(|e| AuthError::Signing(e.to_string()))
}

/// Customers are their customer id; admins may be named freely.
fn check_subject(subject: &str, role: Role) -> Result<(), AuthError> {
    if subject.is_empty() {
        return Err(AuthError::EmptySubject);
    }
    if role == Role::Customer && Uuid::parse_str(subject).is_err() {
        return Err(AuthError::CustomerSubject(subject.to_owned()));
    }
    Ok(())
}

/// Verifies tokens; built once per server from its settings. Shared with the middleware as
/// `web::Data<Authenticator>`.
#[derive(Clone)]
pub struct Authenticator {
    keys: Option<Keys>,
}

#[derive(Clone)]
struct Keys {
    decoding: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// On with `Some` settings, off (full rights for everyone) with `None`.
    pub fn new(settings: Option<&AuthSettings>) -> Self {
        let keys = settings.map(|s| {
            // HS256 only: pinning the algorithm rejects `none`, HS512 and RS256 tokens alike
            // (no algorithm confusion with the secret used as a public key).
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.validate_exp = true;
            validation.leeway = 5;
            Keys {
                decoding: DecodingKey::from_secret(s.jwt_secret()),
                validation,
            }
        });
        Self { keys }
    }

    /// Whether tokens are required.
    pub fn is_on(&self) -> bool {
        self.keys.is_some()
    }

    /// Verifies `token` (signature, algorithm, expiry, subject, role).
    ///
    /// # Errors
    /// [`AuthError::Expired`] or [`AuthError::Invalid`]; with auth off every token is invalid.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let Some(keys) = &self.keys else {
            return Err(AuthError::Invalid("auth is off".to_owned()));
        };
        let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".to_owned()),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Invalid("only HS256 tokens are accepted".to_owned())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing claim {claim}"))
                }
                _ => AuthError::Invalid("malformed token".to_owned()),
            })?;
        let role: Role = data
            .claims
            .role
            .parse()
            .map_err(|e: AuthError| AuthError::Invalid(e.to_string()))?;
        check_subject(&data.claims.sub, role).map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Caller {
            subject: data.claims.sub,
            role,
        })
    }
}

/// Platform endpoints stay open with auth on ([`crate::routes::is_platform`]). `path` is the
/// path as the router sees it (percent-decoded), so an encoded spelling cannot dodge the rules.
pub fn is_exempt(path: &str) -> bool {
    crate::routes::is_platform(path)
}

/// `/admin` and every write to stock items need role `admin`.
pub fn needs_admin(method: &Method, path: &str) -> bool {
    let admin = path == "/admin" || path.starts_with("/admin/");
    let stock_write = method != Method::GET
        && method != Method::HEAD
        && (path == "/api/v1/stock-items" || path.starts_with("/api/v1/stock-items/"));
    admin || stock_write
}

/// Left in the extensions when auth is off: handlers then grant full rights.
#[derive(Debug, Clone, Copy)]
struct AuthOff;

/// The `Authorization: Bearer …` token, `None` when the header is absent.
fn bearer(req: &ServiceRequest) -> Result<Option<&str>, ApiError> {
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

fn rejection(error: &AuthError) -> ApiError {
    match error {
        AuthError::Expired => ApiError::unauthorized("token_expired", error.to_string()),
        _ => ApiError::unauthorized("token_invalid", error.to_string()),
    }
}

/// Middleware: with auth on, verifies the bearer token of every non-exempt request and
/// leaves its [`Caller`] in the extensions; a missing, expired or otherwise invalid token is
/// answered 401 (never let through as anonymous), a customer on an admin path 403. On exempt
/// paths a valid token still yields a `Caller` (the rate limiter keys on it) and a bad one is
/// ignored. With auth off it only marks the request as unrestricted.
///
/// Wrap it inside the correlation middleware (so its problems carry the correlation id) and
/// outside everything that reads the `Caller` (rate limits, idempotency keys).
pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(auth) = req.app_data::<web::Data<Authenticator>>().cloned() else {
        // A wiring bug; refuse rather than serve without checks.
        let error = ApiError::internal(AuthError::Invalid("no authenticator".to_owned()));
        return Ok(reject(req, &error));
    };
    if !auth.is_on() {
        req.extensions_mut().insert(AuthOff);
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let path = req.match_info().as_str().to_owned();
    if is_exempt(&path) {
        if let Ok(Some(token)) = bearer(&req)
            && let Ok(caller) = auth.verify(token)
        {
            req.extensions_mut().insert(caller);
        }
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let verified = match bearer(&req) {
        Ok(Some(token)) => auth.verify(token).map_err(|e| rejection(&e)),
        Ok(None) => Err(ApiError::unauthorized(
            "token_missing",
            "this endpoint needs Authorization: Bearer <token>",
        )),
        Err(error) => Err(error),
    };
    let caller = match verified {
        Ok(caller) => caller,
        Err(error) => return Ok(reject(req, &error)),
    };
    if caller.role != Role::Admin && needs_admin(req.method(), &path) {
        return Ok(reject(
            req,
            &ApiError::forbidden("this endpoint needs role admin"),
        ));
    }
    req.extensions_mut().insert(caller);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
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
    /// Auth is on and no token was verified (only on exempt paths): no rights.
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

/// Parses a lifetime like `3600`, `90s`, `30m`, `1h` or `7d` (`reserva token --ttl`).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let unit_secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && unit_secs > 0)
        .and_then(|n| n.checked_mul(unit_secs))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{raw:?} is not a lifetime like 3600, 90s, 30m, 1h or 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_minted_token_verifies_to_its_caller() {
        let auth = Authenticator::new(Some(&settings()));
        let id = Uuid::new_v4().to_string();
        let token = mint(&settings(), &id, Role::Customer, Duration::from_secs(60)).unwrap();
        assert_eq!(
            auth.verify(&token).unwrap(),
            Caller {
                subject: id,
                role: Role::Customer
            }
        );
    }

    #[test]
    fn customers_are_uuids_and_admins_are_named_freely() {
        let ttl = Duration::from_secs(60);
        assert!(mint(&settings(), "bob", Role::Customer, ttl).is_err());
        assert!(mint(&settings(), "ops-alice", Role::Admin, ttl).is_ok());
        assert!(mint(&settings(), "", Role::Admin, ttl).is_err());
    }

    #[test]
    fn another_secret_is_a_bad_signature() {
        let other = AuthSettings::new("another-secret-another-secret-xx").unwrap();
        let token = mint(&other, "ops", Role::Admin, Duration::from_secs(60)).unwrap();
        let error = Authenticator::new(Some(&settings())).verify(&token);
        assert!(matches!(error, Err(AuthError::Invalid(_))), "{error:?}");
    }

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_ttl("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn admin_paths_and_stock_writes_need_admin() {
        assert!(needs_admin(&Method::GET, "/admin/projections"));
        assert!(needs_admin(&Method::POST, "/api/v1/stock-items"));
        assert!(needs_admin(
            &Method::POST,
            "/api/v1/stock-items/A-1/restock"
        ));
        assert!(!needs_admin(&Method::GET, "/api/v1/stock-items/A-1"));
        assert!(!needs_admin(&Method::POST, "/api/v1/orders"));
    }
}
