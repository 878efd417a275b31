//! `/admin/webhook-endpoints`: registering outbound webhook endpoints and inspecting what was
//! delivered to them (`crate::outbound` sends).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use std::collections::BTreeSet;

use crate::extract::ValidJson;
use crate::integration::events::SUBJECTS;
use crate::outbound::endpoints;
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::validation::{Validator, accepted};
use crate::views::outbound::{RegisteredEndpoint, WebhookDeliveryView};
use crate::views::read::Page;

use super::params::ReadParams;

/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2048;

/// The body of `POST /admin/webhook-endpoints`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterEndpoint {
    /// Where deliveries are `POST`ed: an `http` or `https` URL with a host.
    #[schema(
        max_length = 2048,
        example = "https://seller.example.com/hooks/reserva"
    )]
    url: String,
    /// The integration-event subjects to deliver (at least one; repeats are ignored).
    #[schema(value_type = Vec<WebhookEventType>, min_items = 1, example = json!(["order.created.v1", "order.confirmed.v1"]))]
    event_types: Vec<String>,
}

/// An integration-event subject an endpoint can be sent (`docs/events.md`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum WebhookEventType {
    /// An order was placed.
    #[schema(rename = "order.created.v1")]
    OrderCreated,
    /// Paid, stock committed.
    #[schema(rename = "order.confirmed.v1")]
    OrderConfirmed,
    /// Cancelled by the customer, an admin, or expired.
    #[schema(rename = "order.cancelled.v1")]
    OrderCancelled,
    /// The order cannot go on.
    #[schema(rename = "order.failed.v1")]
    OrderFailed,
    /// A payment waits for the customer.
    #[schema(rename = "payment.pending.v1")]
    PaymentPending,
    /// A payment succeeded.
    #[schema(rename = "payment.succeeded.v1")]
    PaymentSucceeded,
    /// A payment failed.
    #[schema(rename = "payment.failed.v1")]
    PaymentFailed,
    /// Units or seats held.
    #[schema(rename = "inventory.reserved.v1")]
    InventoryReserved,
    /// A hold ended, or sold units came back.
    #[schema(rename = "inventory.released.v1")]
    InventoryReleased,
    /// Available units fell to the threshold.
    #[schema(rename = "inventory.low-stock.v1")]
    InventoryLowStock,
    /// Nothing left to sell.
    #[schema(rename = "inventory.out-of-stock.v1")]
    InventoryOutOfStock,
}

/// Registers an endpoint and answers its signing secret, once. Events recorded from now on
/// whose subject it asked for are `POST`ed to it, signed with `Reserva-Signature`, in feed
/// order, retried with back-off and parked as `dead` after the last allowed attempt.
#[utoipa::path(
    post,
    path = "/admin/webhook-endpoints",
    tag = "admin",
    request_body = RegisterEndpoint,
    responses(
        (status = 201, description = "Registered; the secret is shown only in this answer", body = RegisteredEndpoint,
         headers(("location" = String, description = "Where its deliveries are listed"))),
        (status = 422, description = "An event type that is no integration-event subject (`unknown_event_type`); `errors` names each", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register_endpoint(
    state: web::Data<AppState>,
    body: ValidJson<RegisterEndpoint>,
) -> Result<HttpResponse, ApiError> {
    let (url, event_types) = registration(body.0)?;
    let endpoint = endpoints::register(&state.pool, &url, &event_types).await?;
    let view = RegisteredEndpoint::from(endpoint);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, view.deliveries.clone()))
        .json(view))
}

/// The URL and the subjects of a registration: 400 for a malformed URL or an empty list,
/// 422 for subjects that do not exist.
fn registration(body: RegisterEndpoint) -> Result<(String, Vec<String>), ApiError> {
    let mut v = Validator::default();
    let url =
        v.text("url", &body.url, MAX_URL_CHARS)
            .and_then(|raw| match reqwest::Url::parse(&raw) {
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some_and(|h| !h.is_empty()) =>
                {
                    Some(url.to_string())
                }
                _ => {
                    v.error("url", "must be an absolute http or https URL");
                    None
                }
            });
    if body.event_types.is_empty() {
        v.error("event_types", "must name at least one event type");
    }
    v.finish()?;
    let url = accepted(url)?;
    let unknown: Vec<FieldError> = body
        .event_types
        .iter()
        .enumerate()
        .filter(|(_, subject)| !SUBJECTS.contains(&subject.as_str()))
        .map(|(i, subject)| {
            FieldError::new(
                format!("event_types[{i}]"),
                format!(
                    "unknown event type {subject:?}; known: {}",
                    SUBJECTS.join(", ")
                ),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(
            "unknown_event_type",
            "the request names event types that do not exist",
        )
        .with_errors(unknown));
    }
    let event_types: BTreeSet<String> = body.event_types.into_iter().collect();
    Ok((url, event_types.into_iter().collect()))
}

/// Paging of `GET /admin/webhook-endpoints/{id}/deliveries`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// 1-based page.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100_000)]
    page: Option<String>,
    /// Rows per page (1–100, default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    per_page: Option<String>,
}

/// An endpoint's deliveries, newest first, each with every attempt made (status code or
/// error, duration) and, while pending, when it is tried next.
#[utoipa::path(
    get,
    path = "/admin/webhook-endpoints/{id}/deliveries",
    tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id"), DeliveryParams),
    responses(
        (status = 200, description = "One page of deliveries", body = Page<WebhookDeliveryView>),
        (status = 404, description = "No such endpoint (`webhook_endpoint_not_found`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let id = v.uuid("id", &path);
    let page = ReadParams {
        min_position: None,
        page: params.page.clone(),
        per_page: params.per_page.clone(),
    }
    .page(&mut v);
    v.finish()?;
    let id = accepted(id)?;
    if !endpoints::exists(&state.pool, id).await? {
        return Err(ApiError::not_found(
            "webhook_endpoint_not_found",
            format!("no webhook endpoint {id}"),
        ));
    }
    let deliveries = endpoints::deliveries(&state.pool, id, page).await?;
    Ok(HttpResponse::Ok().json(Page::of(deliveries, WebhookDeliveryView::from)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    #[test]
    fn the_documented_event_types_are_the_subjects_of_the_mapping() {
        let schema = serde_json::to_value(WebhookEventType::schema()).unwrap();
        let documented: BTreeSet<String> = serde_json::to_string(&schema)
            .unwrap()
            .split('"')
            .filter(|s| s.ends_with(".v1"))
            .map(str::to_owned)
            .collect();
        let subjects: BTreeSet<String> = SUBJECTS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(documented, subjects);
    }

    fn body(url: &str, event_types: &[&str]) -> RegisterEndpoint {
        RegisterEndpoint {
            url: url.to_owned(),
            event_types: event_types.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn registration_checks_the_url_and_the_subjects() {
        let ok = registration(body(
            " https://example.com/hooks ",
            &["order.created.v1", "order.created.v1"],
        ))
        .unwrap();
        assert_eq!(ok.0, "https://example.com/hooks");
        assert_eq!(ok.1, ["order.created.v1"]);
        for url in ["ftp://example.com/x", "example.com/hooks", "http://", ""] {
            let error = registration(body(url, &["order.created.v1"])).unwrap_err();
            assert_eq!(error.code(), "validation_failed", "{url}");
        }
        let error = registration(body("http://example.com", &[])).unwrap_err();
        assert_eq!(error.code(), "validation_failed");
        let error = registration(body("http://example.com", &["order.shipped.v9"])).unwrap_err();
        assert_eq!(error.code(), "unknown_event_type");
    }
}
