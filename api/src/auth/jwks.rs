//! An identity provider's public keys: fetched from its JWKS URL, kept by `kid`, fetched again
//! when a token names a key the cache does not hold and when the set's max-age has passed.
//!
//! Why it is shaped this way:
//! - verification reads an immutable snapshot (an `Arc` swapped under a lock that is never
//!   held across an await), so a request whose key is known never waits for the provider;
//! - fetches are serialised by one async mutex: requests that miss the same new `kid` while a
//!   fetch is in flight wait for that fetch and look again, rather than fetching once each;
//! - at most one fetch starts per cool-down, whatever asked for it (an unknown `kid`, a stale
//!   set, the start): a flood of tokens naming invented keys costs the provider one request
//!   per cool-down, and a provider that is down is not hammered;
//! - a fetch that fails keeps the keys already held (a provider outage does not log everyone
//!   out); one that succeeds replaces them (a key the provider removed stops verifying);
//! - only signature keys with a `kid` that are RSA (RS256) or P-256 (ES256) are kept, each with
//!   the one algorithm it may verify: a symmetric (`oct`) key published by mistake can never
//!   be used as an HMAC secret, and an RS256 key never verifies another algorithm.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::configuration::ProviderSettings;

/// The longest one fetch of the key set may take (connecting included).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a fetched set is used before it is fetched again in the background, when the
/// provider's answer carries no `Cache-Control: max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// The longest a set is used without fetching it again, whatever max-age the provider sends.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A public key of the provider, with the one algorithm it verifies.
pub struct ProviderKey {
    /// RS256 for an RSA key, ES256 for a P-256 key.
    pub algorithm: Algorithm,
    /// The key itself.
    pub decoding: DecodingKey,
}

/// Why no key could be given for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The provider's current set has no such key (after fetching it again, or within the
    /// cool-down of the last fetch).
    #[error("the identity provider has no key {0:?}")]
    Unknown(String),
    /// The latest fetch failed and the key is not held, so whether it exists is not known.
    #[error("the identity provider's keys cannot be fetched; retry shortly")]
    Unavailable {
        /// How long until the next fetch may start.
        retry_after: Duration,
    },
}

/// Why one fetch of the key set failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the provider answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the body is not a JWK set: {0}")]
    Body(#[from] serde_json::Error),
}

/// What verification reads: the keys of the latest successful fetch.
#[derive(Default)]
struct Snapshot {
    keys: HashMap<String, Arc<ProviderKey>>,
    /// Until when the keys are used without fetching again; `None` before the first success.
    fresh_until: Option<Instant>,
    /// Whether the latest fetch failed (then a missing key may only be missing from us).
    failing: bool,
}

/// The provider's keys, shared by every worker of a server.
pub struct KeyCache {
    url: String,
    cool_down: Duration,
    client: reqwest::Client,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held while fetching; holds when the latest fetch started.
    fetching: Arc<Mutex<Option<Instant>>>,
}

/// The body of a JWKS; each key is read on its own so one key of a kind this library does not
/// know does not hide the others.
#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeyCache {
    /// A cache of the keys at `settings.jwks_url`, empty until the first fetch.
    ///
    /// # Errors
    /// The HTTP client cannot be built (its TLS backend failed to start).
    pub fn new(settings: &ProviderSettings) -> Result<Arc<Self>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            // Fetches are rare and start on whichever worker's runtime needs one; a pooled
            // connection would stay tied to the runtime that opened it.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("reserva/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            url: settings.jwks_url.clone(),
            cool_down: settings.cool_down,
            client,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            fetching: Arc::new(Mutex::new(None)),
        }))
    }

    /// Starts the first fetch in the background (inside a Tokio runtime), so the first token
    /// does not wait for it. A provider that cannot be reached does not stop the start: the
    /// failure is logged and the next token naming a key fetches again (after the cool-down).
    pub fn prefetch(self: &Arc<Self>) {
        self.refresh_in_background();
    }

    /// The key `kid` names: from the snapshot when held (fetching again in the background if
    /// the set's max-age has passed), else after one fetch of the set, coalesced with any in
    /// flight and skipped within the cool-down of the last one.
    ///
    /// # Errors
    /// [`KeyError::Unknown`] when the provider's set has no such key;
    /// [`KeyError::Unavailable`] when the latest fetch failed and the key is not held.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<ProviderKey>, KeyError> {
        let snapshot = self.snapshot();
        if let Some(key) = snapshot.keys.get(kid) {
            if snapshot
                .fresh_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.refresh_in_background();
            }
            return Ok(Arc::clone(key));
        }
        self.refresh_for(kid).await
    }

    /// One fetch for a `kid` the snapshot does not hold, unless a fetch that finished while
    /// this request waited brought it, or the last fetch started within the cool-down.
    async fn refresh_for(&self, kid: &str) -> Result<Arc<ProviderKey>, KeyError> {
        let mut last_fetch = self.fetching.lock().await;
        if let Some(key) = self.snapshot().keys.get(kid) {
            return Ok(Arc::clone(key));
        }
        if self.may_fetch(*last_fetch) {
            self.fetch(&mut last_fetch).await;
        }
        let snapshot = self.snapshot();
        match snapshot.keys.get(kid) {
            Some(key) => Ok(Arc::clone(key)),
            None if snapshot.failing => Err(KeyError::Unavailable {
                retry_after: last_fetch.map_or(Duration::ZERO, |at| {
                    self.cool_down.saturating_sub(at.elapsed())
                }),
            }),
            None => Err(KeyError::Unknown(kid.to_owned())),
        }
    }

    /// Fetches in a task of its own unless a fetch is in flight or the cool-down forbids it
    /// (outside a Tokio runtime, does nothing: the next unknown `kid` fetches instead).
    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(mut last_fetch) = Arc::clone(&self.fetching).try_lock_owned() else {
            return;
        };
        if !self.may_fetch(*last_fetch) {
            return;
        }
        let cache = Arc::clone(self);
        runtime.spawn(async move { cache.fetch(&mut last_fetch).await });
    }

    fn may_fetch(&self, last_fetch: Option<Instant>) -> bool {
        last_fetch.is_none_or(|at| at.elapsed() >= self.cool_down)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Fetches the set and swaps the snapshot: the new keys on success, the old ones marked
    /// failing otherwise. Called with the fetch lock held (`last_fetch` is its content).
    async fn fetch(&self, last_fetch: &mut Option<Instant>) {
        let started = Instant::now();
        *last_fetch = Some(started);
        let previous = self.snapshot();
        let next = match self.download().await {
            Ok((keys, max_age)) => {
                metrics::counter!("reserva_auth_jwks_fetches_total", "outcome" => "ok")
                    .increment(1);
                tracing::info!(
                    url = %self.url,
                    keys = keys.len(),
                    max_age_secs = max_age.as_secs(),
                    "fetched the identity provider's keys"
                );
                Snapshot {
                    keys,
                    // Fetching more often than the cool-down allows could not happen anyway.
                    fresh_until: Some(started + max_age.max(self.cool_down).min(LONGEST_MAX_AGE)),
                    failing: false,
                }
            }
            Err(error) => {
                metrics::counter!("reserva_auth_jwks_fetches_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(
                    url = %self.url,
                    error = %error,
                    keys_kept = previous.keys.len(),
                    "could not fetch the identity provider's keys"
                );
                Snapshot {
                    keys: previous.keys.clone(),
                    fresh_until: previous.fresh_until,
                    failing: true,
                }
            }
        };
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// The usable keys of the set at the URL, and how long the provider says to keep them.
    async fn download(&self) -> Result<(HashMap<String, Arc<ProviderKey>>, Duration), FetchError> {
        let response = self
            .client
            .get(&self.url)
            .header(ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let max_age = max_age(response.headers()).unwrap_or(DEFAULT_MAX_AGE);
        let body = response.bytes().await?;
        let set: RawSet = serde_json::from_slice(&body)?;
        Ok((usable_keys(set.keys), max_age))
    }
}

/// The keys of a set that may verify tokens, by `kid` (the first of a repeated `kid` wins);
/// the others are skipped with a debug line, not an error.
fn usable_keys(raw: Vec<serde_json::Value>) -> HashMap<String, Arc<ProviderKey>> {
    let mut keys = HashMap::new();
    for value in raw {
        let kid = value
            .get("kid")
            .and_then(|kid| kid.as_str())
            .map(str::to_owned);
        let key = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "not a JWK")
            .and_then(|jwk| provider_key(&jwk));
        match key {
            Ok((kid, key)) => {
                keys.entry(kid).or_insert_with(|| Arc::new(key));
            }
            Err(reason) => tracing::debug!(?kid, reason, "skipping a key of the identity provider"),
        }
    }
    keys
}

/// The `kid` and key of `jwk`, or why it may not verify tokens.
fn provider_key(jwk: &Jwk) -> Result<(String, ProviderKey), &'static str> {
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|usage| *usage != PublicKeyUse::Signature)
    {
        return Err("not a signature key (use)");
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|operations| !operations.contains(&KeyOperations::Verify))
    {
        return Err("not a verification key (key_ops)");
    }
    let (algorithm, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return Err("neither an RSA nor a P-256 key"),
    };
    if jwk.common.key_algorithm.is_some_and(|alg| alg != named) {
        return Err("its alg is not RS256 (RSA) or ES256 (P-256)");
    }
    let decoding = DecodingKey::from_jwk(jwk).map_err(|_| "its parameters do not decode")?;
    Ok((
        kid,
        ProviderKey {
            algorithm,
            decoding,
        },
    ))
}

/// The `max-age` of a `Cache-Control` header (`no-cache` and `no-store` count as 0).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        seconds
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    /// The public half of `tests/keys/rsa-1.der` (any valid RSA parameters would do).
    fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "n": "yTicHXK08LEUv5agdbW81-5y82u9iUqwUArTyQUI5mrguCYJHA_wfoKy-yW1p3NLNa0FUib41SovgeAyGlhZ5HdzOkEDO5bhBFK1GtkFK7RlyLEn-MRrjjpLrCcqQhkK1-lZf7OWWAaH_4pni5SLAXaywYdA5JeV1wZrcNmo2hpQrmqRpBdIlhG7Yz-iwtjZV49ZVEmQ22zyiD1IPFqImn02s2kYAiBM4Zg2KNex6Ly9sZZTKIpVyh5LdYvNuNsXU3Px5fKATs-X9LeRvzXFDVo2ks2fo9msfvx6OxksH26h4VUkF-yqLVCJLffbzYTNusvbjoLEvrjDonU0bkit1w", "e": "AQAB"})
    }

    /// The public half of `tests/keys/ec-1.der`.
    fn p256(kid: &str) -> serde_json::Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid,
               "x": "yWQTvwSbIfaRFoPS35Eqsh4gFo6dA4LA8fuJq7mBZHc",
               "y": "yzxBLn1x74eeNqtr-F4GupcEX8M7YjgntQStzgW183I"})
    }

    fn with(
        mut key: serde_json::Value,
        field: &str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        key[field] = value;
        key
    }

    #[test]
    fn rsa_keys_verify_rs256_and_p256_keys_es256() {
        let keys = usable_keys(vec![rsa("r"), p256("e")]);
        assert_eq!(keys["r"].algorithm, Algorithm::RS256);
        assert_eq!(keys["e"].algorithm, Algorithm::ES256);
    }

    #[test]
    fn keys_that_could_be_misused_are_skipped_and_the_rest_kept() {
        let keys = usable_keys(vec![
            // A symmetric key must never become an HMAC secret (algorithm confusion).
            json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}),
            with(rsa("enc"), "use", json!("enc")),
            with(rsa("ops"), "key_ops", json!(["encrypt"])),
            with(rsa("rs512"), "alg", json!("RS512")),
            with(rsa("oaep"), "alg", json!("RSA-OAEP-256")),
            with(p256("p384"), "crv", json!("P-384")),
            with(p256("mislabelled"), "alg", json!("RS256")),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "what", "kid": "odd"}),
            with(rsa("sig"), "use", json!("sig")),
            with(rsa("rs256"), "alg", json!("RS256")),
            with(p256("es256"), "alg", json!("ES256")),
        ]);
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["es256", "rs256", "sig"]);
    }

    #[test]
    fn max_age_comes_from_cache_control() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
            headers
        };
        assert_eq!(
            max_age(&headers("public, max-age=600, must-revalidate")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(&headers("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&headers("public")), None);
        assert_eq!(max_age(&headers("max-age=soon")), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }
}
