//! An identity provider's JWKS endpoint on a free loopback port, reached by the service's real
//! HTTP client, and [`TestKey`]s to sign its tokens with.
//!
//! The test decides what the endpoint publishes ([`FakeIdentityProvider::publish`], e.g. to
//! rotate keys), whether it is up, which `Cache-Control` it sends, and reads how many times it
//! was asked ([`FakeIdentityProvider::fetches`]).
//!
//! The private keys are checked in under `tests/keys/` (test-only keys, generated once with
//! OpenSSL; see the README there): generating RSA keys at test time is slow in debug builds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use api::configuration::ProviderSettings;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A key the test signs provider tokens with.
#[derive(Clone)]
pub struct TestKey {
    /// The `kid` it is published and named under.
    pub kid: String,
    /// RS256 or ES256.
    pub algorithm: Algorithm,
    encoding: EncodingKey,
}

impl TestKey {
    /// The first RSA key (`tests/keys/rsa-1.der`), as `kid`.
    pub fn rsa(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(include_bytes!("../keys/rsa-1.der")),
        )
    }

    /// The second RSA key (`tests/keys/rsa-2.der`): the one a provider rotates to.
    pub fn other_rsa(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(include_bytes!("../keys/rsa-2.der")),
        )
    }

    /// The P-256 key (`tests/keys/ec-1.der`), as `kid`.
    pub fn p256(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(include_bytes!("../keys/ec-1.der")),
        )
    }

    fn new(kid: &str, algorithm: Algorithm, encoding: EncodingKey) -> Self {
        Self {
            kid: kid.to_owned(),
            algorithm,
            encoding,
        }
    }

    /// The public key as a provider publishes it (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.algorithm).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).expect("a JWK as JSON")
    }

    /// A token of `claims`, signed with this key and naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    /// A token of `claims` under `header` as given (another `kid`, none…), signed with this key.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// What the endpoint publishes and has seen.
struct State {
    keys: Vec<Value>,
    up: bool,
    cache_control: Option<String>,
    fetches: usize,
}

/// The JWKS endpoint. Dropping it stops the server.
pub struct FakeIdentityProvider {
    /// `http://127.0.0.1:<port>/.well-known/jwks.json`.
    pub jwks_url: String,
    state: Arc<Mutex<State>>,
    server: ServerHandle,
}

impl FakeIdentityProvider {
    /// The `iss` of its tokens.
    pub const ISSUER: &str = "https://idp.reserva.test/";
    /// The `aud` the service is configured with.
    pub const AUDIENCE: &str = "reserva-api";

    /// Starts the endpoint publishing `keys` (JWKs, e.g. [`TestKey::jwk`]).
    pub async fn start(keys: Vec<Value>) -> Self {
        let state = Arc::new(Mutex::new(State {
            keys,
            up: true,
            cache_control: None,
            fetches: 0,
        }));
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the fake identity provider");
        let jwks_url = format!("http://{}/.well-known/jwks.json", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            jwks_url,
            state,
            server: handle,
        }
    }

    /// Settings for a service that trusts this provider, with `cool_down` between fetches.
    pub fn settings(&self, cool_down: Duration) -> ProviderSettings {
        let mut settings = ProviderSettings::new(&self.jwks_url, Self::ISSUER, Self::AUDIENCE)
            .expect("valid provider settings");
        settings.cool_down = cool_down;
        settings
    }

    /// Publishes `keys` from now on (the previous ones are no longer published).
    pub fn publish(&self, keys: Vec<Value>) {
        lock(&self.state).keys = keys;
    }

    /// Up, it answers the key set; down, `503` (as a provider in an outage or behind a
    /// failing proxy).
    pub fn set_up(&self, up: bool) {
        lock(&self.state).up = up;
    }

    /// The `Cache-Control` header of its answers (none by default).
    pub fn set_cache_control(&self, value: &str) {
        lock(&self.state).cache_control = Some(value.to_owned());
    }

    /// How many requests it received, answered or not.
    pub fn fetches(&self) -> usize {
        lock(&self.state).fetches
    }

    /// Claims of a token from this provider for this service: `sub`, `role`, `iss`, `aud`,
    /// `iat`, and `exp` an hour away.
    pub fn claims(subject: &str, role: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "sub": subject,
            "role": role,
            "iss": Self::ISSUER,
            "aud": Self::AUDIENCE,
            "iat": now - 10,
            "exp": now + 3600,
        })
    }
}

impl Drop for FakeIdentityProvider {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

async fn answer(state: web::Data<Mutex<State>>) -> HttpResponse {
    let mut state = lock(&state);
    state.fetches += 1;
    if !state.up {
        return HttpResponse::ServiceUnavailable().body("down for maintenance");
    }
    let mut response = HttpResponse::Ok();
    if let Some(cache_control) = &state.cache_control {
        response.insert_header(("cache-control", cache_control.clone()));
    }
    response.json(json!({ "keys": state.keys }))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide its failure behind poison.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
