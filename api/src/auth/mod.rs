//! Who is calling: the verified bearer token's subject and role.
//!
//! The authentication middleware verifies the token (when auth is on) and leaves a [`Caller`]
//! in the request's extensions; the rate limiter, idempotency keys and handlers read it from
//! there, so a token is verified once per request.
//!
//! Two kinds of token are accepted, told apart by the header's `alg`:
//! - HS256 JWTs (`sub`, `role`, `iat`, `exp`) signed with `RESERVA_AUTH__JWT_SECRET`, for local
//!   use; [`mint`] makes them (`reserva token`);
//! - RS256/ES256 JWTs from an identity provider (`RESERVA_AUTH__JWKS_URL`), checked against
//!   its published keys, issuer and audience, the caller and role read from configurable
//!   claims ([`provider`], keys in [`jwks`]).
//!
//! Any other algorithm, and either kind when its setting is absent, is refused. The route table decides who needs what: its guarded
//! scopes ([`crate::routes::GUARDED`]) are wrapped by [`guard::authenticate`], `/admin` and the
//! stock-item writes also by [`guard::require_admin`]; the platform endpoints sit outside them.
//! Ownership of orders, bookings and payments is checked by the handlers through [`Access`].
//! With auth off, every request has full rights.
//!
//! # Layout
//! - this module: roles, claims, minting and verifying local tokens, and the
//!   [`Authenticator`] that sends each token to its verifier;
//! - [`provider`]: verifying an identity provider's tokens;
//! - [`jwks`]: the provider's keys, fetched, cached and refreshed;
//! - [`guard`]: the middleware of the guarded scopes, and [`Access`] for handlers.

pub mod guard;
pub mod jwks;
mod provider;

pub use guard::Access;

use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::configuration::AuthSettings;

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
    /// Minting needs the HS256 secret, and only an identity provider is configured.
    #[error("no HS256 secret is configured (RESERVA_AUTH__JWT_SECRET)")]
    NoSecret,
    /// The token's `iss` is missing or not the configured issuer.
    #[error("the token was not issued by the configured identity provider (iss)")]
    WrongIssuer,
    /// The token's `aud` is missing or does not hold the configured audience.
    #[error("the token is meant for another audience (aud)")]
    WrongAudience,
    /// The identity provider's key set has no key with the token's `kid`.
    #[error("the identity provider has no key {0:?}")]
    KeyUnknown(String),
    /// The identity provider's keys cannot be fetched and the token's key is not held.
    #[error("the identity provider's keys cannot be fetched; retry shortly")]
    ProviderUnavailable {
        /// How long until the keys may be fetched again.
        retry_after: Duration,
    },
}

/// The HTTP client of the identity provider's keys could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the identity provider's HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// Longest lifetime [`mint`] accepts.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Makes a token for `subject` with `role`, valid for `ttl` from now, signed with the
/// configured secret (what `reserva token` prints; tests use it too).
///
/// # Errors
/// [`AuthError`] for an empty subject, a customer subject that is not a UUID, a lifetime
/// outside 1 s – 100 years, or settings without an HS256 secret.
pub fn mint(
    settings: &AuthSettings,
    subject: &str,
    role: Role,
    ttl: Duration,
) -> Result<String, AuthError> {
    let secret = settings.jwt_secret().ok_or(AuthError::NoSecret)?;
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
        &EncodingKey::from_secret(secret),
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
    /// HS256 tokens, with `RESERVA_AUTH__JWT_SECRET`.
    local: Option<Local>,
    /// RS256/ES256 tokens, with the identity provider's keys.
    provider: Option<provider::Provider>,
}

/// Verifies the HS256 tokens [`mint`] makes.
#[derive(Clone)]
struct Local {
    decoding: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// On with `Some` settings, off (full rights for everyone) with `None`. With an identity
    /// provider, its keys are first fetched in the background: a provider that cannot be
    /// reached does not stop the start.
    ///
    /// # Errors
    /// [`ClientError`] when the provider's HTTP client cannot be built.
    pub fn new(settings: Option<&AuthSettings>) -> Result<Self, ClientError> {
        let local = settings.and_then(AuthSettings::jwt_secret).map(|secret| {
            // HS256 only: pinning the algorithm rejects `none` and HS512 alike.
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.validate_exp = true;
            validation.leeway = LEEWAY_SECS;
            Local {
                decoding: DecodingKey::from_secret(secret),
                validation,
            }
        });
        let provider = settings
            .and_then(AuthSettings::provider)
            .map(provider::Provider::new)
            .transpose()?;
        Ok(Self { local, provider })
    }

    /// Whether tokens are required.
    pub fn is_on(&self) -> bool {
        self.local.is_some() || self.provider.is_some()
    }

    /// Verifies `token` (signature, algorithm, expiry, subject, role; for an identity
    /// provider's token also its key, issuer and audience).
    ///
    /// The header's `alg` decides the verifier, and each verifier pins its algorithms: an
    /// HS256 token is checked with the local secret only, never with a provider's public key
    /// as the HMAC secret (algorithm confusion), and RS256/ES256 tokens only with the
    /// provider's keys.
    ///
    /// # Errors
    /// [`AuthError`] saying why; with auth off every token is invalid.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if !self.is_on() {
            return Err(AuthError::Invalid("auth is off".to_owned()));
        }
        // `alg: none` and unknown algorithms fail here (no such `Algorithm`).
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token".to_owned()))?;
        match (header.alg, &self.local, &self.provider) {
            (Algorithm::HS256, Some(local), _) => local.verify(token),
            (Algorithm::RS256 | Algorithm::ES256, _, Some(provider)) => {
                provider.verify(token, header.kid.as_deref()).await
            }
            (alg, local, provider) => Err(AuthError::Invalid(format!(
                "{alg:?} tokens are not accepted (only {})",
                match (local.is_some(), provider.is_some()) {
                    (true, true) => "HS256, RS256 and ES256",
                    (true, false) => "HS256",
                    _ => "RS256 and ES256, from the identity provider",
                }
            ))),
        }
    }
}

impl Local {
    fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
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

    #[tokio::test]
    async fn a_minted_token_verifies_to_its_caller() {
        let auth = Authenticator::new(Some(&settings())).unwrap();
        let id = Uuid::new_v4().to_string();
        let token = mint(&settings(), &id, Role::Customer, Duration::from_secs(60)).unwrap();
        assert_eq!(
            auth.verify(&token).await.unwrap(),
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

    #[tokio::test]
    async fn another_secret_is_a_bad_signature() {
        let other = AuthSettings::new("another-secret-another-secret-xx").unwrap();
        let token = mint(&other, "ops", Role::Admin, Duration::from_secs(60)).unwrap();
        let error = Authenticator::new(Some(&settings()))
            .unwrap()
            .verify(&token)
            .await;
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
}
