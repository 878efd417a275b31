//! The HTTP edge for browsers: CORS from the allow-list, security headers, compression.

use api::edge::EdgeSettings;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::io::Read;
use tests::{TestApp, spawn_app_with};

const SHOP: &str = "https://shop.example";

async fn app_allowing(origins: &str) -> TestApp {
    let edge = EdgeSettings::new(origins, false, 1024).expect("valid origins");
    spawn_app_with(|settings| settings.edge = edge).await
}

async fn preflight(app: &TestApp, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}/api/v1/orders", app.address))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("send the preflight")
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn problem_code(response: reqwest::Response) -> String {
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.expect("a problem document");
    body["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_preflight_from_a_listed_origin_is_allowed_with_the_api_headers() {
    let app = app_allowing(&format!("{SHOP}, http://localhost:3000")).await;

    let response = preflight(
        &app,
        SHOP,
        "POST",
        "authorization, content-type, idempotency-key",
    )
    .await;

    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), Some(SHOP));
    let methods = header(headers, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = header(headers, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for wanted in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(wanted), "{wanted} in {allowed}");
    }
    assert_eq!(header(headers, "access-control-max-age"), Some("600"));
    assert_eq!(
        header(headers, "access-control-allow-credentials"),
        None,
        "credentials are off by default"
    );
    assert_eq!(app.event_count().await, 0, "a preflight runs no handler");
}

#[tokio::test]
async fn a_preflight_from_another_origin_or_for_another_header_is_refused_with_a_problem() {
    let app = app_allowing(SHOP).await;

    let foreign = preflight(&app, "https://evil.example", "POST", "content-type").await;
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        header(foreign.headers(), "access-control-allow-origin"),
        None
    );
    assert_eq!(problem_code(foreign).await, "cors_origin_refused");

    let odd_header = preflight(&app, SHOP, "POST", "x-not-allowed").await;
    assert_eq!(odd_header.status(), 400);
    assert_eq!(problem_code(odd_header).await, "cors_preflight_refused");

    // With no allow-list at all (the default), every preflight is refused.
    let closed = spawn_app_with(|_| {}).await;
    let refused = preflight(&closed, SHOP, "GET", "authorization").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(problem_code(refused).await, "cors_origin_refused");
}

#[tokio::test]
async fn actual_requests_carry_cors_headers_only_for_listed_origins() {
    let app = app_allowing(SHOP).await;
    let get = |origin: &'static str| {
        app.client
            .get(format!("{}/api/v1/stock-items", app.address))
            .header("origin", origin)
            .send()
    };

    let listed = get(SHOP).await.unwrap();
    let foreign = get("https://evil.example").await.unwrap();

    assert_eq!(listed.status(), 200);
    assert_eq!(
        header(listed.headers(), "access-control-allow-origin"),
        Some(SHOP)
    );
    let exposed = header(listed.headers(), "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    // The browser enforces CORS by the missing header; the server answers as to anyone.
    assert_eq!(foreign.status(), 200);
    assert_eq!(
        header(foreign.headers(), "access-control-allow-origin"),
        None
    );
}

#[test]
fn a_wildcard_with_credentials_or_an_origin_with_a_path_does_not_start() {
    assert!(EdgeSettings::new("*", true, 1024).is_err());
    assert!(EdgeSettings::new("*", false, 1024).is_ok());
    assert!(EdgeSettings::new("https://shop.example/app", false, 1024).is_err());
    assert!(EdgeSettings::new("shop.example", false, 1024).is_err());
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_docs_a_policy_of_their_own() {
    let app = spawn_app_with(|_| {}).await;

    for path in ["/api/v1/stock-items", "/health/live", "/no-such-route"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(
            header(headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(headers, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(headers, "x-frame-options"), Some("DENY"));
        assert_eq!(
            header(headers, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
        assert_eq!(
            header(headers, "strict-transport-security"),
            None,
            "no HSTS over plain HTTP"
        );
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    let policy = header(docs.headers(), "content-security-policy").unwrap_or_default();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("script-src 'self' 'unsafe"), "{policy}");

    let behind_tls = app
        .client
        .get(format!("{}/health/live", app.address))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        header(behind_tls.headers(), "strict-transport-security")
            .is_some_and(|v| v.starts_with("max-age=")),
        "HSTS behind a TLS-terminating proxy"
    );
}

/// Fetches `path` with `Accept-Encoding: encoding` (none when empty) and returns the
/// `Content-Encoding` it came with and the body as sent.
async fn fetch(app: &TestApp, path: &str, encoding: &str) -> (Option<String>, Vec<u8>) {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if !encoding.is_empty() {
        request = request.header("accept-encoding", encoding);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path} with {encoding:?}");
    let content_encoding = header(response.headers(), "content-encoding").map(str::to_owned);
    (content_encoding, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn large_answers_are_compressed_as_negotiated_and_decode_to_the_same_body() {
    let app = spawn_app_with(|_| {}).await;
    let (plain_encoding, plain) = fetch(&app, "/openapi.json", "").await;
    assert_eq!(plain_encoding, None);
    assert!(
        plain.len() > 1024,
        "the document is large enough to compress"
    );

    let (gzip_encoding, gzip) = fetch(&app, "/openapi.json", "gzip").await;
    let (br_encoding, br) = fetch(&app, "/openapi.json", "br;q=1.0, gzip;q=0.5").await;

    assert_eq!(gzip_encoding.as_deref(), Some("gzip"));
    assert_eq!(br_encoding.as_deref(), Some("br"));
    assert!(gzip.len() < plain.len() && br.len() < plain.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(gzip.as_slice())
        .read_to_end(&mut unzipped)
        .expect("valid gzip");
    let mut unbrotlied = Vec::new();
    brotli::Decompressor::new(br.as_slice(), 4096)
        .read_to_end(&mut unbrotlied)
        .expect("valid brotli");
    assert_eq!(unzipped, plain);
    assert_eq!(unbrotlied, plain);
}

#[tokio::test]
async fn small_answers_and_unknown_encodings_are_sent_as_they_are() {
    let app = spawn_app_with(|_| {}).await;

    let (small_encoding, small) = fetch(&app, "/health/live", "gzip, br").await;
    let (unknown_encoding, unknown) = fetch(&app, "/openapi.json", "zstd").await;

    assert_eq!(small_encoding, None, "under 1 KiB: not worth compressing");
    assert!(small.len() < 1024);
    serde_json::from_slice::<Value>(&small).expect("plain JSON");
    assert_eq!(unknown_encoding, None);
    serde_json::from_slice::<Value>(&unknown).expect("plain JSON");
}
