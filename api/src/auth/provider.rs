//! Tokens from an identity provider: RS256 or ES256, signed by a key of its JWKS
//! ([`super::jwks`]), from the configured issuer for the configured audience, with the caller
//! and its role in configurable claims.
//!
//! The token's `kid` picks the key and the key fixes the algorithm, so a token cannot choose
//! how it is checked: an HS256 token never reaches these keys (the [`super::Authenticator`]
//! sends it to the local secret or refuses it), and an ES256 token naming an RSA key fails.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::jwks::{KeyCache, KeyError};
use super::{AuthError, Caller, LEEWAY_SECS, Role, check_subject};
use crate::configuration::ProviderSettings;

/// Verifies the provider's tokens; cheap to clone (the key cache is shared).
#[derive(Clone)]
pub(super) struct Provider {
    keys: Arc<KeyCache>,
    rs256: Validation,
    es256: Validation,
    subject_claim: String,
    role_claim: String,
}

impl Provider {
    /// The provider of `settings`, its first key fetch started in the background.
    pub(super) fn new(settings: &ProviderSettings) -> Result<Self, reqwest::Error> {
        let keys = KeyCache::new(settings)?;
        keys.prefetch();
        Ok(Self {
            keys,
            rs256: validation(Algorithm::RS256, settings),
            es256: validation(Algorithm::ES256, settings),
            subject_claim: settings.subject_claim.clone(),
            role_claim: settings.role_claim.clone(),
        })
    }

    /// Verifies an RS256 or ES256 `token` whose header names `kid`.
    pub(super) async fn verify(&self, token: &str, kid: Option<&str>) -> Result<Caller, AuthError> {
        let kid = kid.ok_or_else(|| {
            AuthError::Invalid("the token names no key (kid) of the identity provider".to_owned())
        })?;
        let key = self.keys.key(kid).await.map_err(|error| match error {
            KeyError::Unknown(kid) => AuthError::KeyUnknown(kid),
            KeyError::Unavailable { retry_after } => AuthError::ProviderUnavailable { retry_after },
        })?;
        let validation = match key.algorithm {
            Algorithm::ES256 => &self.es256,
            _ => &self.rs256,
        };
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, validation)
            .map_err(|error| refusal(error.kind(), kid, key.algorithm))?;
        let subject = match claim(&data.claims, &self.subject_claim) {
            Some(Value::String(subject)) => subject.clone(),
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "the claim {} is not a string",
                    self.subject_claim
                )));
            }
            None => {
                return Err(AuthError::Invalid(format!(
                    "missing claim {}",
                    self.subject_claim
                )));
            }
        };
        let role = role(claim(&data.claims, &self.role_claim), &self.role_claim)?;
        check_subject(&subject, role).map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Caller { subject, role })
    }
}

/// Why a token failed the library's checks, for the caller: issuer and audience have codes of
/// their own (a token for another tenant or application is a configuration problem to
/// diagnose, not a forgery).
fn refusal(kind: &ErrorKind, kid: &str, algorithm: Algorithm) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("missing claim {claim}"))
        }
        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".to_owned()),
        ErrorKind::InvalidAlgorithm => {
            AuthError::Invalid(format!("key {kid:?} verifies {algorithm:?} tokens only"))
        }
        ErrorKind::ImmatureSignature => {
            AuthError::Invalid("the token is not valid yet (nbf)".to_owned())
        }
        _ => AuthError::Invalid("malformed token".to_owned()),
    }
}

/// What every token of the provider must satisfy besides its signature: this algorithm only,
/// `exp`, `iss` and `aud` present, the issuer and audience configured, `nbf` if present.
fn validation(algorithm: Algorithm, settings: &ProviderSettings) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    validation
}

/// The claim `name`: the top-level claim of exactly that name when there is one (namespaced
/// claims such as `https://example.com/role` hold dots), else the dotted path into objects
/// (`realm_access.roles`).
fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    claims.get(name).or_else(|| {
        name.split('.')
            .try_fold(claims, |value, segment| value.get(segment))
    })
}

/// The role a role claim holds: `customer` or `admin` as a string, or among an array of
/// strings (providers often list several roles; `admin` wins over `customer`, others are
/// ignored).
fn role(value: Option<&Value>, name: &str) -> Result<Role, AuthError> {
    match value {
        Some(Value::String(raw)) => raw
            .parse()
            .map_err(|e: AuthError| AuthError::Invalid(e.to_string())),
        Some(Value::Array(values)) => {
            let has = |wanted: &str| values.iter().any(|value| value.as_str() == Some(wanted));
            if has(Role::Admin.as_str()) {
                Ok(Role::Admin)
            } else if has(Role::Customer.as_str()) {
                Ok(Role::Customer)
            } else {
                Err(AuthError::Invalid(format!(
                    "the claim {name} holds neither customer nor admin"
                )))
            }
        }
        Some(_) => Err(AuthError::Invalid(format!(
            "the claim {name} is not a string or an array of strings"
        ))),
        None => Err(AuthError::Invalid(format!("missing claim {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claim_is_found_by_its_exact_name_or_by_a_dotted_path() {
        let claims = json!({
            "sub": "top",
            "realm_access": {"roles": ["offline", "admin"]},
            "https://reserva.example/role": "customer",
        });
        assert_eq!(claim(&claims, "sub"), Some(&json!("top")));
        assert_eq!(
            claim(&claims, "realm_access.roles"),
            Some(&json!(["offline", "admin"]))
        );
        assert_eq!(
            claim(&claims, "https://reserva.example/role"),
            Some(&json!("customer"))
        );
        assert_eq!(claim(&claims, "realm_access.missing"), None);
        assert_eq!(claim(&claims, "sub.deeper"), None);
    }

    #[test]
    fn a_role_is_a_string_or_found_in_an_array() {
        let admin = json!(["customer", "admin"]);
        let customer = json!(["offline_access", "customer"]);
        let neither = json!(["offline_access"]);
        assert_eq!(role(Some(&json!("admin")), "role"), Ok(Role::Admin));
        assert_eq!(role(Some(&admin), "roles"), Ok(Role::Admin));
        assert_eq!(role(Some(&customer), "roles"), Ok(Role::Customer));
        assert!(role(Some(&neither), "roles").is_err());
        assert!(role(Some(&json!("root")), "role").is_err());
        assert!(role(Some(&json!(1)), "role").is_err());
        assert!(role(None, "role").is_err());
    }
}
