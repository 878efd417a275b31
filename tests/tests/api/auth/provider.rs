//! Tokens from an identity provider: RS256/ES256 verified against a JWKS served by a real HTTP
//! server in the test ([`FakeIdentityProvider`]) and fetched by the service's own client —
//! issuer, audience, expiry, key rotation, the fetch cool-down, an outage, claim names, and
//! local HS256 tokens beside them.

use std::time::{Duration, Instant};

use super::{assert_refused, place_order};
use api::auth::Role;
use api::configuration::{AuthSettings, ProviderSettings};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use tests::{FakeIdentityProvider, JWT_SECRET, TestApp, TestKey, eventually, spawn_app_with};
use uuid::Uuid;

/// A cool-down short enough for tests that need a second fetch soon after the first.
const SHORT_COOL_DOWN: Duration = Duration::from_millis(300);

/// A server that trusts `provider` (and, with `hs256`, also the test secret), without sagas;
/// `configure` adjusts the provider's settings.
async fn spawn_trusting(
    provider: &FakeIdentityProvider,
    cool_down: Duration,
    hs256: bool,
    configure: impl FnOnce(&mut ProviderSettings),
) -> TestApp {
    let mut settings = provider.settings(cool_down);
    configure(&mut settings);
    spawn_app_with(move |app| {
        app.auth = Some(if hs256 {
            AuthSettings::new(JWT_SECRET)
                .expect("a long enough secret")
                .with_provider(settings)
        } else {
            AuthSettings::provider_only(settings)
        });
        app.sagas = false;
    })
    .await
}

/// Waits for the fetch the service starts on its own when it starts.
async fn first_fetch(provider: &FakeIdentityProvider) {
    eventually("the service's first fetch of the key set", || async {
        (provider.fetches() >= 1).then_some(())
    })
    .await;
}

fn claims(subject: &str, role: &str) -> Value {
    FakeIdentityProvider::claims(subject, role)
}

/// Registers product `sku` (20 units) with `token` (an admin's).
async fn register_as(app: &TestApp, token: &str, sku: &str) -> reqwest::Response {
    app.post_as(
        token,
        "/api/v1/stock-items",
        &json!({"sku": sku, "name": "Mug", "kind": "product", "quantity": 20,
                "unit_price": {"amount": 1500, "currency": "MXN"}}),
    )
    .await
}

/// Asserts a 503 `auth_provider_unavailable` problem with a `Retry-After`.
async fn assert_provider_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "auth_provider_unavailable", "{body}");
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_provider_act_as_their_subject_and_role() {
    let rsa = TestKey::rsa("rsa-2025");
    let ec = TestKey::p256("ec-2025");
    let provider = FakeIdentityProvider::start(vec![rsa.jwk(), ec.jwk()]).await;
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |_| {}).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let admin = rsa.sign(&claims("ops", "admin"));
    let alice_token = ec.sign(&claims(&alice.to_string(), "customer"));
    let bob_token = rsa.sign(&claims(&bob.to_string(), "customer"));

    let registered = register_as(&app, &admin, "MUG-1").await;
    let id = place_order(&app, &alice_token, alice, "MUG-1").await;
    let path = format!("/api/v1/orders/{id}?min_position={}", app.head().await);
    let own = app.get_as(&alice_token, &path).await;
    let anothers = app.get_as(&bob_token, &path).await;
    let for_bob = app
        .post_as(
            &alice_token,
            "/api/v1/orders",
            &json!({"customer_id": bob, "items": [{"sku": "MUG-1", "quantity": 1}]}),
        )
        .await;
    let admin_only = app.get_as(&alice_token, "/admin/projections").await;

    assert_eq!(registered.status(), 202, "an admin token may write stock");
    assert_eq!(own.status(), 200, "the ES256 customer reads its own order");
    assert_eq!(anothers.status(), 404, "the RS256 customer is someone else");
    assert_eq!(
        for_bob.status(),
        403,
        "a customer orders only for its subject"
    );
    assert_eq!(admin_only.status(), 403, "a customer is no admin");
    let placed = &app.events_for("order", &id).await[0];
    assert_eq!(placed.metadata["actor"], alice.to_string());
}

#[tokio::test]
async fn a_token_of_another_issuer_or_audience_or_expired_is_refused_with_its_code() {
    let key = TestKey::rsa("rsa-2025");
    let provider = FakeIdentityProvider::start(vec![key.jwk()]).await;
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |_| {}).await;
    let with = |field: &str, value: Value| {
        let mut claims = claims("ops", "admin");
        claims[field] = value;
        key.sign(&claims)
    };
    let without = |field: &str| {
        let mut claims = claims("ops", "admin");
        claims.as_object_mut().unwrap().remove(field);
        key.sign(&claims)
    };
    let an_hour_ago = chrono::Utc::now().timestamp() - 3600;

    let cases = [
        (
            with("iss", json!("https://evil.example/")),
            "token_wrong_issuer",
        ),
        (without("iss"), "token_wrong_issuer"),
        (with("aud", json!("another-api")), "token_wrong_audience"),
        (
            with("aud", json!(["another-api", "billing"])),
            "token_wrong_audience",
        ),
        (without("aud"), "token_wrong_audience"),
        (with("exp", json!(an_hour_ago)), "token_expired"),
        (without("sub"), "token_invalid"),
        (with("role", json!("root")), "token_invalid"),
    ];
    for (token, code) in cases {
        assert_refused(app.get_as(&token, "/admin/projections").await, code).await;
    }
    // The same claims as they should be pass, and so does an audience among several.
    let good = key.sign(&claims("ops", "admin"));
    let among = with("aud", json!(["billing", FakeIdentityProvider::AUDIENCE]));
    assert_eq!(app.get_as(&good, "/admin/projections").await.status(), 200);
    assert_eq!(app.get_as(&among, "/admin/projections").await.status(), 200);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_and_a_removed_key_stops_verifying() {
    let old = TestKey::rsa("2025-01");
    let new = TestKey::other_rsa("2025-02");
    let provider = FakeIdentityProvider::start(vec![old.jwk()]).await;
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |_| {}).await;
    first_fetch(&provider).await;
    let old_token = old.sign(&claims("ops", "admin"));
    let new_token = new.sign(&claims("ops", "admin"));
    assert_eq!(
        app.get_as(&old_token, "/admin/projections").await.status(),
        200
    );

    // The provider rotates: the new key replaces the old one in its set.
    provider.publish(vec![new.jwk()]);
    tokio::time::sleep(SHORT_COOL_DOWN).await;
    let with_new = app.get_as(&new_token, "/admin/projections").await;
    let fetches_after_rotation = provider.fetches();
    let with_old = app.get_as(&old_token, "/admin/projections").await;

    assert_eq!(
        with_new.status(),
        200,
        "the new kid was fetched and verifies"
    );
    assert_eq!(
        fetches_after_rotation, 2,
        "one fetch at start, one for the new kid"
    );
    assert_refused(with_old, "token_key_unknown").await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_key_set_at_most_once_per_cool_down() {
    const COOL_DOWN: Duration = Duration::from_secs(2);
    let key = TestKey::rsa("rsa-2025");
    let provider = FakeIdentityProvider::start(vec![key.jwk()]).await;
    let app = spawn_trusting(&provider, COOL_DOWN, false, |_| {}).await;
    first_fetch(&provider).await;
    let good = key.sign(&claims("ops", "admin"));
    // Past the cool-down of the first fetch, so the flood may cause one.
    tokio::time::sleep(COOL_DOWN).await;

    let started = Instant::now();
    let flood = (0..40).map(|_| {
        let bogus = TestKey::rsa(&Uuid::new_v4().to_string()).sign(&claims("ops", "admin"));
        let app = &app;
        async move { app.get_as(&bogus, "/admin/projections").await }
    });
    let answers = futures::future::join_all(flood).await;
    let elapsed = started.elapsed();
    let flood_fetches = provider.fetches() - 1;

    for answer in answers {
        assert_refused(answer, "token_key_unknown").await;
    }
    let allowed = 1 + elapsed.as_millis() / COOL_DOWN.as_millis();
    assert!(
        (1..=allowed).contains(&(flood_fetches as u128)),
        "{flood_fetches} fetches for 40 unknown kids in {elapsed:?} (at most {allowed})"
    );
    // The known key kept verifying throughout, without asking the provider.
    let before = provider.fetches();
    assert_eq!(app.get_as(&good, "/admin/projections").await.status(), 200);
    assert_eq!(provider.fetches(), before);
}

#[tokio::test]
async fn a_provider_down_at_start_answers_503_until_it_is_up_then_its_tokens_pass() {
    let key = TestKey::p256("ec-2025");
    let provider = FakeIdentityProvider::start(vec![key.jwk()]).await;
    provider.set_up(false);
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |_| {}).await;
    first_fetch(&provider).await;
    let token = key.sign(&claims("ops", "admin"));

    assert_provider_unavailable(app.get_as(&token, "/admin/projections").await).await;
    // The service started anyway: its probes answer.
    assert_eq!(app.get("/health/live").await.status(), 200);

    provider.set_up(true);
    eventually("the provider's token to pass once it is up", || async {
        let response = app.get_as(&token, "/admin/projections").await;
        if response.status() == 200 {
            return Some(());
        }
        assert_provider_unavailable(response).await;
        None
    })
    .await;
}

#[tokio::test]
async fn a_provider_never_reached_is_a_503_and_local_tokens_still_pass() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = TestKey::rsa("rsa-2025");
    let provider = FakeIdentityProvider::start(vec![key.jwk()]).await;
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, true, |settings| {
        settings.jwks_url = format!("http://127.0.0.1:{port}/jwks");
    })
    .await;
    let local = app.token("ops", Role::Admin);

    for _ in 0..3 {
        let token = key.sign(&claims("ops", "admin"));
        assert_provider_unavailable(app.get_as(&token, "/admin/projections").await).await;
    }
    assert_eq!(app.get_as(&local, "/admin/projections").await.status(), 200);
}

#[tokio::test]
async fn the_subject_and_role_are_read_from_the_configured_claims() {
    let key = TestKey::rsa("rsa-2025");
    let provider = FakeIdentityProvider::start(vec![key.jwk()]).await;
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |settings| {
        settings.subject_claim = "uid".to_owned();
        settings.role_claim = "realm_access.roles".to_owned();
    })
    .await;
    // As a provider sends them: its own `sub`, Reserva's id in `uid`, roles in a list.
    let token = |uid: &str, roles: Value| {
        let mut claims = claims("auth0|5f3c", "ignored");
        claims["uid"] = json!(uid);
        claims["realm_access"] = json!({"roles": roles});
        key.sign(&claims)
    };
    let customer = Uuid::new_v4();
    let admin = token("ops", json!(["offline_access", "admin"]));
    let customer_token = token(&customer.to_string(), json!(["offline_access", "customer"]));

    assert_eq!(register_as(&app, &admin, "MUG-1").await.status(), 202);
    let id = place_order(&app, &customer_token, customer, "MUG-1").await;
    let path = format!("/api/v1/orders/{id}?min_position={}", app.head().await);
    assert_eq!(app.get_as(&customer_token, &path).await.status(), 200);
    assert_eq!(
        app.events_for("order", &id).await[0].metadata["actor"],
        customer.to_string()
    );
    // The default claim names are not read any more.
    let defaults = key.sign(&claims("ops", "admin"));
    let no_role = token("ops", json!(["offline_access"]));
    assert_refused(
        app.get_as(&defaults, "/admin/projections").await,
        "token_invalid",
    )
    .await;
    assert_refused(
        app.get_as(&no_role, "/admin/projections").await,
        "token_invalid",
    )
    .await;
}

#[tokio::test]
async fn local_hs256_tokens_pass_beside_the_provider_and_never_verify_with_its_keys() {
    let rsa = TestKey::rsa("rsa-2025");
    let ec = TestKey::p256("ec-2025");
    // A symmetric key published by mistake: public, so it must never sign anything.
    let published_secret = b"a-secret-anyone-can-read-in-the-jwks";
    let oct = json!({"kty": "oct", "kid": "shared", "alg": "HS256",
                     "k": "YS1zZWNyZXQtYW55b25lLWNhbi1yZWFkLWluLXRoZS1qd2tz"});
    let provider = FakeIdentityProvider::start(vec![rsa.jwk(), ec.jwk(), oct]).await;
    let both = spawn_trusting(&provider, SHORT_COOL_DOWN, true, |_| {}).await;
    let provider_only = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |_| {}).await;
    let hs256_with_kid = |kid: &str, secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &claims("mallory", "admin"),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    // The EC key's public point (`04 || x || y`), as an HMAC secret: the classic confusion.
    let ec_jwk: Jwk = serde_json::from_value(ec.jwk()).unwrap();
    let ec_point = DecodingKey::from_jwk(&ec_jwk).unwrap();
    let confused = [
        hs256_with_kid("shared", published_secret),
        hs256_with_kid("ec-2025", ec_point.try_get_as_bytes().unwrap()),
        // ES256, naming the RSA key: the key, not the token, says how it is checked.
        TestKey::p256("rsa-2025").sign(&claims("mallory", "admin")),
        // A provider token naming no key.
        rsa.sign_with(Header::new(Algorithm::RS256), &claims("mallory", "admin")),
    ];

    let local = both.token("ops", Role::Admin);
    assert_eq!(
        both.get_as(&local, "/admin/projections").await.status(),
        200
    );
    let from_provider = rsa.sign(&claims("ops", "admin"));
    assert_eq!(
        both.get_as(&from_provider, "/admin/projections")
            .await
            .status(),
        200
    );
    for app in [&both, &provider_only] {
        for token in &confused {
            assert_refused(
                app.get_as(token, "/admin/projections").await,
                "token_invalid",
            )
            .await;
        }
    }
    // Without the secret, even a correctly signed local token is refused.
    assert_refused(
        provider_only.get_as(&local, "/admin/projections").await,
        "token_invalid",
    )
    .await;
}

#[tokio::test]
async fn a_key_the_provider_removed_stops_verifying_once_the_sets_max_age_has_passed() {
    let old = TestKey::rsa("2025-01");
    let new = TestKey::other_rsa("2025-02");
    let provider = FakeIdentityProvider::start(vec![old.jwk()]).await;
    provider.set_cache_control("public, max-age=1");
    let app = spawn_trusting(&provider, SHORT_COOL_DOWN, false, |_| {}).await;
    first_fetch(&provider).await;
    let old_token = old.sign(&claims("ops", "admin"));
    assert_eq!(
        app.get_as(&old_token, "/admin/projections").await.status(),
        200
    );

    // Only tokens of the old key arrive: no unknown kid asks for the set again.
    provider.publish(vec![new.jwk()]);
    eventually(
        "the old key to be dropped after the set's max-age",
        || async {
            let response = app.get_as(&old_token, "/admin/projections").await;
            if response.status() == 200 {
                return None;
            }
            assert_refused(response, "token_key_unknown").await;
            Some(())
        },
    )
    .await;
    assert!(provider.fetches() >= 2);
}

#[tokio::test]
async fn serve_refuses_to_start_with_provider_settings_that_are_incomplete_or_wrong() {
    let url = ("RESERVA_AUTH__JWKS_URL", "https://idp.example/jwks");
    let issuer = ("RESERVA_AUTH__ISSUER", "https://idp.example/");
    let audience = ("RESERVA_AUTH__AUDIENCE", "reserva-api");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[url, audience], "RESERVA_AUTH__ISSUER: is required"),
        (&[url, issuer], "RESERVA_AUTH__AUDIENCE: is required"),
        (
            &[
                ("RESERVA_AUTH__JWKS_URL", "idp.example/jwks"),
                issuer,
                audience,
            ],
            "RESERVA_AUTH__JWKS_URL: ",
        ),
        (
            &[
                ("RESERVA_AUTH__JWKS_URL", "http://idp.example/jwks"),
                issuer,
                audience,
            ],
            "RESERVA_AUTH__JWKS_URL: \"http://idp.example/jwks\": use https",
        ),
        // A provider setting without the URL (say, its name mistyped) would leave auth off.
        (
            &[("RESERVA_AUTH__JWKS_ULR", url.1), issuer, audience],
            "RESERVA_AUTH__ISSUER: is only used with RESERVA_AUTH__JWKS_URL",
        ),
        (
            &[
                url,
                issuer,
                audience,
                ("RESERVA_AUTH__JWKS_COOL_DOWN_MS", "soon"),
            ],
            "RESERVA_AUTH__JWKS_COOL_DOWN_MS: cannot parse",
        ),
    ];

    for (env, expected) in cases {
        let output = tests::run_reserva(&["serve"], env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}
