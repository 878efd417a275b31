//! The fake's HTTP handling: scripted answers, idempotent replays, routing, errors, forms.

use super::events::intent_json;
use super::intents::{cancel, create_intent, expands, list_intents, refund, with_intent};
use super::{Answer, Received, Replay, State, lock};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use commands::payment_gateway::Fault;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

pub(super) async fn answer(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let received = Received {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        idempotency_key: request
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        query: decode_pairs(request.query_string()),
        form: decode_pairs(&String::from_utf8_lossy(&body)),
    };
    // The lock is released before a chaotic answer waits.
    let answered = {
        let mut state = lock(&state);
        state.received.push(received.clone());
        match state.answers.pop_front() {
            Some((status, body)) => Ok((status, body, false)),
            None => match state.chaos.draw() {
                Some(fault) => Err(fault),
                None => Ok(idempotent(&mut state, &received)),
            },
        }
    };
    let (status, body, replayed) = match answered {
        Ok(answer) => answer,
        Err(fault) => return chaotic(fault).await,
    };
    let mut response = HttpResponse::build(StatusCode::from_u16(status).unwrap_or_default());
    if replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    response.json(body)
}

/// A call chaos picked, failed before the fake changes anything: a 503 `api_error`, no answer
/// for an hour (the client's timeout ends the call first), or a 200 whose body is not JSON.
async fn chaotic(fault: Fault) -> HttpResponse {
    match fault {
        Fault::Refuse => HttpResponse::ServiceUnavailable().json(error(
            "api_error",
            None,
            "simulated refusal (chaos)",
        )),
        Fault::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            HttpResponse::GatewayTimeout().finish()
        }
        Fault::Malformed => HttpResponse::Ok()
            .content_type("application/json")
            .body("<html><body>502 Bad Gateway</body></html>"),
    }
}

/// Replays a key's first successful answer, or routes the request and remembers a success.
pub(super) fn idempotent(state: &mut State, request: &Received) -> (u16, Value, bool) {
    let key = request
        .idempotency_key
        .as_ref()
        .filter(|_| request.method == "POST");
    if let Some(replay) = key.and_then(|k| state.replays.get(k)) {
        if replay.method == request.method
            && replay.path == request.path
            && replay.form == request.form
        {
            return (200, replay.body.clone(), true);
        }
        let message = "Keys for idempotent requests can only be used with the same \
                       parameters they were first used with.";
        return (400, error("idempotency_error", None, message), false);
    }
    let (status, body) = route(state, request);
    if let Some(key) = key
        && status == 200
    {
        let replay = Replay {
            method: request.method.clone(),
            path: request.path.clone(),
            form: request.form.clone(),
            body: body.clone(),
        };
        state.replays.insert(key.clone(), replay);
    }
    (status, body, false)
}

pub(super) fn route(state: &mut State, request: &Received) -> Answer {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => create_intent(state, &request.form),
        ("GET", ["v1", "payment_intents"]) => list_intents(state, &request.query),
        ("GET", ["v1", "payment_intents", id]) => {
            let expand = expands(&request.query, "latest_charge");
            with_intent(state, id, |intent| (200, intent_json(intent, expand)))
        }
        ("POST", ["v1", "payment_intents", id, "cancel"]) => {
            let reason = request.form.get("cancellation_reason").cloned();
            with_intent(state, id, |intent| cancel(intent, reason))
        }
        ("POST", ["v1", "refunds"]) => refund(state, &request.form),
        _ => (
            404,
            error(
                "invalid_request_error",
                None,
                &format!(
                    "Unrecognized request URL ({} {})",
                    request.method, request.path
                ),
            ),
        ),
    }
}

/// Stripe's error body.
pub(super) fn error(kind: &str, code: Option<&str>, message: &str) -> Value {
    json!({"error": {"type": kind, "code": code, "message": message}})
}

pub(super) fn unexpected_state(message: &str) -> Value {
    error(
        "invalid_request_error",
        Some("payment_intent_unexpected_state"),
        message,
    )
}

pub(super) fn missing(kind: &str, id: &str) -> Answer {
    let message = format!("No such {kind}: '{id}'");
    (
        404,
        error("invalid_request_error", Some("resource_missing"), &message),
    )
}

/// `a=1&metadata%5Bk%5D=v+w` → pairs, percent- and plus-decoded.
pub(super) fn decode_pairs(encoded: &str) -> HashMap<String, String> {
    encoded
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

pub(super) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
