//! `POST /webhooks/stripe`: verified on the raw body before anything is parsed.

use actix_web::{HttpRequest, HttpResponse, web};
use commands::provider_events::{self, Outcome, Rejected};

use crate::problem::ApiError;
use crate::state::AppState;

/// Largest body accepted (Stripe events are a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// Applies a Stripe event. Duplicates and events Reserva does not act on answer 200 too, so
/// Stripe stops delivering them; a bad signature answers 400 and records nothing.
#[utoipa::path(
    post,
    path = "/webhooks/stripe",
    tag = "payments",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256 of \"{t}.{raw body}\">`; 5-minute tolerance")),
    request_body(content = Object, description = "A Stripe event, verified on the raw bytes before it is parsed", content_type = "application/json"),
    responses(
        (status = 200, description = "Applied, or a duplicate / an event Reserva does not act on", body = WebhookReceipt),
        (status = 400, description = "Missing, malformed, stale or wrong signature, or a malformed event; nothing recorded", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 256 KiB", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stripe(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(signature) = request
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        provider_events::record("unknown", "invalid_signature");
        return Err(ApiError::bad_request(
            "missing_signature",
            "the Stripe-Signature header is required",
        ));
    };
    let Ok(payload) = std::str::from_utf8(&body) else {
        provider_events::record("unknown", "malformed");
        return Err(ApiError::bad_request(
            "malformed_event",
            "the body is not UTF-8",
        ));
    };
    let outcome = provider_events::receive(
        &state.bus,
        &state.pool,
        payload,
        signature,
        &state.webhook_secret,
        state.webhook_wait,
    )
    .await
    .map_err(|error| match error {
        Ok(Rejected::NotYetRecorded(payment)) => ApiError::not_yet(
            "payment_not_recorded",
            format!("payment {payment} is not recorded yet; deliver again"),
        ),
        Ok(rejected) => {
            let code = match rejected {
                Rejected::BadSignature => "invalid_signature",
                Rejected::Stale => "stale_signature",
                Rejected::BadHeader => "malformed_signature",
                Rejected::Malformed(_) | Rejected::NotYetRecorded(_) => "malformed_event",
            };
            ApiError::bad_request(code, rejected.to_string())
        }
        Err(error) => error.into(),
    })?;
    Ok(HttpResponse::Ok().json(match outcome {
        Outcome::Applied {
            payment_id,
            position,
        } => WebhookReceipt {
            received: true,
            payment_id: Some(payment_id),
            position,
            ignored: None,
        },
        Outcome::Ignored(why) | Outcome::Duplicate(why) | Outcome::Refused(why) => WebhookReceipt {
            received: true,
            payment_id: None,
            position: None,
            ignored: Some(why),
        },
    }))
}

/// `200` of `POST /webhooks/stripe`: applied (`payment_id`, `position`) or ignored (`ignored`
/// says why: a duplicate, an event type Reserva does not act on, …).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    /// Always `true`: Stripe stops delivering.
    received: bool,
    /// The payment the event changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<uuid::Uuid>,
    /// Global position of the payment's last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<i64>,
    /// Why nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<String>,
}
