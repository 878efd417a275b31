//! Audit over HTTP: an aggregate's events and its state at a moment (`/admin/audit`), a
//! request's causation tree, and the customer's own timeline of an order or booking.

use actix_web::{HttpResponse, web};
use commands::audit::history;
use domain::DomainError;
use domain::booking::Booking;
use domain::order::Order;
use serde::Deserialize;

use crate::auth::Access;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validation::Validator;
use crate::views::audit::{AuditEventView, AuditStreamView, HistoryView, TraceView};

use super::params::ReadParams;
use super::{Cancellable, path_uuid};

/// `?as_of=` and paging of `GET /admin/audit/{type}/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events at or before this moment, and the state then: an RFC 3339 time
    /// (`2026-12-01T10:00:00Z`) or a global position (`12345`).
    as_of: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    read: ReadParams,
}

/// Every event of one aggregate with its position, time, type, version, payload, metadata and
/// hash, paged; with `as_of`, only those up to then and the state they fold to with today's
/// code.
#[utoipa::path(
    get,
    path = "/admin/audit/{type}/{id}",
    tag = "audit",
    params(
        ("type" = String, Path, description = "`order`, `booking`, `stock_item` or `payment`"),
        ("id" = String, Path, description = "The aggregate's id (a UUID, or a stock item's SKU)"),
        AuditParams,
        ReadParams,
    ),
    responses(
        (status = 200, description = "One page of its events", body = AuditStreamView),
        (status = 404, description = "No such aggregate type, or no events (`aggregate_not_found`)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An event today's code cannot read (`undecodable_event`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn aggregate_events(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path.into_inner();
    let aggregate_type = history::TYPES
        .into_iter()
        .find(|t| *t == kind)
        .ok_or_else(|| {
            ApiError::not_found(
                "aggregate_type_not_found",
                format!(
                    "no aggregate type {kind}; known: {}",
                    history::TYPES.join(", ")
                ),
            )
        })?;
    let mut v = Validator::default();
    let as_of = params.as_of.as_deref().and_then(|raw| {
        crate::audit::parse_as_of(raw)
            .map_err(|message| v.error("as_of", message))
            .ok()
    });
    let page = params.read.page(&mut v);
    v.finish()?;
    let per_page = i64::from(page.per_page);
    let offset = i64::from(page.page - 1) * per_page;
    let mut events = history::stream_until(
        &state.pool,
        aggregate_type,
        &id,
        as_of,
        per_page + 1,
        offset,
    )
    .await?;
    let has_more = events.len() as i64 > per_page;
    events.truncate(page.per_page as usize);
    let state_then = match as_of {
        Some(at) => history::as_of(&state.pool, aggregate_type, &id, at).await?,
        None => None,
    };
    if events.is_empty() && page.page == 1 {
        return Err(ApiError::not_found(
            "aggregate_not_found",
            format!(
                "no events of {aggregate_type} {id}{}",
                if as_of.is_some() { " by then" } else { "" }
            ),
        ));
    }
    Ok(HttpResponse::Ok().json(AuditStreamView {
        aggregate_type,
        aggregate_id: id,
        items: events.into_iter().map(AuditEventView::from).collect(),
        page: page.page,
        per_page: page.per_page,
        has_more,
        as_of: state_then.map(Into::into),
    }))
}

/// Every event in every aggregate that one request (one correlation id) caused, as a
/// causation tree: the request's events, what the sagas did about each, the provider's
/// webhooks under the payment that created the intent.
#[utoipa::path(
    get,
    path = "/admin/audit/traces/{id}",
    tag = "audit",
    params(("id" = String, Path, description = "The correlation id (the request's `X-Correlation-ID`)")),
    responses(
        (status = 200, description = "The causation tree", body = TraceView),
        (status = 404, description = "No event carries it (`trace_not_found`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn trace(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let correlation = path.into_inner();
    let roots = history::trace(&state.pool, &correlation).await?;
    if roots.is_empty() {
        return Err(ApiError::not_found(
            "trace_not_found",
            format!("no events carry correlation id {correlation}"),
        ));
    }
    Ok(HttpResponse::Ok().json(TraceView::new(correlation, roots)))
}

/// The status changes of one of the caller's orders, with time and reason.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/history",
    tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Its timeline, oldest first", body = HistoryView),
        (status = 404, description = "No such order of the caller's", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn order_history(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    timeline::<Order>(&state, &access, &path).await
}

/// The status changes of one of the caller's bookings, with time and reason.
#[utoipa::path(
    get,
    path = "/api/v1/bookings/{id}/history",
    tag = "bookings",
    params(("id" = uuid::Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, description = "Its timeline, oldest first", body = HistoryView),
        (status = 404, description = "No such booking of the caller's", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn booking_history(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    timeline::<Booking>(&state, &access, &path).await
}

/// The timeline of `A` `raw_id`, read from its events (always current: no read model to
/// wait for). Someone else's answers as an unknown one, so ids cannot be probed.
async fn timeline<A>(
    state: &AppState,
    access: &Access,
    raw_id: &str,
) -> Result<HttpResponse, ApiError>
where
    A: Cancellable,
    A::Command: Clone + Send,
    A::Error: DomainError,
{
    let id = path_uuid(raw_id)?;
    let owner = state.bus.load::<A>(&id.to_string()).await?.owner();
    if !owner.is_some_and(|owner| access.may_act_for(owner.0)) {
        return Err(commands::CommandError::Rejected(A::not_found()).into());
    }
    let changes = history::status_history(&state.pool, A::TYPE, &id.to_string()).await?;
    Ok(HttpResponse::Ok().json(HistoryView::new(id, changes)))
}
