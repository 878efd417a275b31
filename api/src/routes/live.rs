//! Live views as server-sent events (see [`crate::live`]).

use actix_web::{HttpRequest, HttpResponse, web};
use domain::booking::Booking;
use domain::order::Order;
use domain::stock_item::StockItem;

use super::{path_sku, path_uuid};
use crate::auth::Access;
use crate::live;
use crate::problem::ApiError;
use crate::state::AppState;

/// The position a reconnecting client last saw (`Last-Event-ID`), if it sent one.
fn last_event_id(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(raw) = req.headers().get("last-event-id") else {
        return Ok(None);
    };
    let parsed = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|raw| !raw.is_empty())
        .map(str::parse::<i64>);
    match parsed {
        None => Ok(None),
        Some(Ok(position)) if position >= 0 => Ok(Some(position)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_last_event_id",
            "Last-Event-ID must be a position this API sent (a non-negative integer)",
        )),
    }
}

/// An order's status changes as server-sent events (`order.status_changed`): its whole
/// history first (or what follows `Last-Event-ID`), then each change as it happens. The
/// customer who placed it or an admin.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/events",
    tag = "orders",
    params(
        ("id" = uuid::Uuid, Path, description = "The order's id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this position"),
    ),
    responses(
        (status = 200, description = "An unending stream of `order.status_changed` events", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad id or Last-Event-ID", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn order_events(
    state: web::Data<AppState>,
    access: Access,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    let last = last_event_id(&req)?;
    live::open::<Order>(&state, &access, &id.to_string(), last).await
}

/// A booking's status changes as server-sent events (`booking.status_changed`), like an
/// order's.
#[utoipa::path(
    get,
    path = "/api/v1/bookings/{id}/events",
    tag = "bookings",
    params(
        ("id" = uuid::Uuid, Path, description = "The booking's id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this position"),
    ),
    responses(
        (status = 200, description = "An unending stream of `booking.status_changed` events", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad id or Last-Event-ID", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such booking", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn booking_events(
    state: web::Data<AppState>,
    access: Access,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    let last = last_event_id(&req)?;
    live::open::<Booking>(&state, &access, &id.to_string(), last).await
}

/// A stock item's availability as server-sent events (`stock.updated`): the current state
/// first, then each change.
#[utoipa::path(
    get,
    path = "/api/v1/stock-items/{sku}/events",
    tag = "stock",
    params(("sku" = String, Path, description = "The stock item's SKU")),
    responses(
        (status = 200, description = "An unending stream of `stock.updated` events", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad SKU", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such stock item", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stock_item_events(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_sku(&path)?;
    live::open::<StockItem>(&state, &access, sku.as_str(), None).await
}
