//! Bookings: guests on a time slot; place, cancel and read. The booking saga comes with the
//! feed.

use actix_web::{HttpResponse, web};
use domain::booking::{Booking, BookingCommand};
use domain::stock_item::{StockItem, StockKind};
use domain::{BookingId, CustomerId};
use serde::Deserialize;

use projections::queries;

use crate::views::read::{BookingView, Page};

use super::params::{ReadParams, found, settle, wait_for};
use super::{CancelBody, accepted_command, path_uuid};
use crate::auth::Access;
use crate::extract::{OptionalJson, RequestContext, ValidJson};
use crate::problem::{ApiError, FieldError};
use crate::state::{AppState, Ttl};
use crate::validation::{Validator, accepted};

/// `POST /api/v1/bookings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceBooking {
    /// The customer (with auth on, the token's subject).
    #[schema(format = Uuid)]
    customer_id: String,
    /// A stock item of kind `time_slot`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", example = "TOUR-0900")]
    slot_sku: String,
    /// Seats: 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    guests: i64,
}

/// Records a booking in `PENDING_PAYMENT`.
#[utoipa::path(
    post,
    path = "/api/v1/bookings",
    tag = "bookings",
    request_body = PlaceBooking,
    responses(
        (status = 202, description = "Placed; the saga holds the seats and creates the payment", body = super::CommandAccepted<'static>),
    )
)]
pub async fn place_booking(
    state: web::Data<AppState>,
    ctx: RequestContext,
    ValidJson(body): ValidJson<PlaceBooking>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let customer = v.uuid("customer_id", &body.customer_id);
    let slot_sku = v.sku("slot_sku", &body.slot_sku);
    let guests = v.quantity("guests", body.guests);
    v.finish()?;
    let slot_sku = accepted(slot_sku)?;
    let customer = accepted(customer)?;
    ctx.access.require_acting_for(customer)?;
    let slot = state.bus.load::<StockItem>(slot_sku.as_str()).await?;
    let unit_price = match (slot.kind(), slot.unit_price()) {
        (Some(StockKind::TimeSlot { .. }), Some(price)) => price,
        (Some(StockKind::Product), _) => {
            return Err(
                ApiError::unprocessable("not_a_time_slot", "slot_sku names a product")
                    .with_errors(vec![FieldError::new("slot_sku", "not a time slot")]),
            );
        }
        _ => {
            return Err(
                ApiError::unprocessable("unknown_slot", "slot_sku names no stock item")
                    .with_errors(vec![FieldError::new(
                        "slot_sku",
                        format!("no slot {slot_sku}"),
                    )]),
            );
        }
    };
    let id = BookingId::new_random();
    let command = BookingCommand::Place {
        customer_id: CustomerId(customer),
        slot_sku,
        guests: accepted(guests)?,
        unit_price,
        expires_at: Ttl::deadline(state.ttl.booking),
    };
    let committed = state
        .bus
        .execute::<Booking>(&id.to_string(), command, &ctx.metadata())
        .await?;
    Ok(accepted_command(
        &id.to_string(),
        &format!("/api/v1/bookings/{id}"),
        committed,
    ))
}

/// Cancels a booking that has not ended (a `CONFIRMED` one is cancelled and then refunded by
/// the saga). Idempotent: cancelling a cancelled booking records nothing and answers 202 with
/// the same position. An unknown booking is 404, one that already ended otherwise 409
/// `illegal_transition`.
#[utoipa::path(
    post,
    path = "/api/v1/bookings/{id}/cancel",
    tag = "bookings",
    params(("id" = uuid::Uuid, Path, description = "The booking's id")),
    request_body(content = Option<super::CancelBody>, description = "Optional: the reason"),
    responses(
        (status = 202, description = "Cancelled (or already cancelled)", body = super::CommandAccepted<'static>),
        (status = 404, description = "No such booking", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The booking already ended (`illegal_transition`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_booking(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<HttpResponse, ApiError> {
    super::cancel::<Booking>(&state, &ctx, &path, body).await
}

/// Filters of `GET /api/v1/bookings`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BookingListParams {
    /// Only this customer's bookings.
    #[param(value_type = Option<uuid::Uuid>)]
    customer: Option<String>,
    /// Only bookings of this time slot (its SKU).
    slot: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    read: ReadParams,
}

/// Reads one booking from the bookings read model (and its payment from the payments one).
#[utoipa::path(
    get,
    path = "/api/v1/bookings/{id}",
    tag = "bookings",
    params(("id" = uuid::Uuid, Path, description = "The booking's id"), ReadParams),
    responses(
        (status = 200, description = "The booking", body = BookingView),
        (status = 404, description = "No such booking", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_booking(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    settle(&state, &params, &["bookings", "payments"]).await?;
    found(
        queries::booking(
            &state.read_pool,
            state.read_caches.bookings(),
            id,
            state.read_wait,
        )
        .await?
        .map(BookingView::from)
        .filter(|booking| access.may_act_for(booking.customer_id)),
        "booking_not_found",
        || format!("no booking {id}"),
    )
}

/// Lists bookings by customer and slot, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/bookings",
    tag = "bookings",
    params(BookingListParams, ReadParams),
    responses(
        (status = 200, description = "One page of bookings", body = Page<BookingView>),
    )
)]
pub async fn list_bookings(
    state: web::Data<AppState>,
    access: Access,
    params: web::Query<BookingListParams>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let customer = params
        .customer
        .as_deref()
        .and_then(|c| v.uuid("customer", c));
    let slot = params.slot.as_deref().and_then(|s| v.sku("slot", s));
    let min_position = params.read.min_position(&mut v);
    let page = params.read.page(&mut v);
    v.finish()?;
    wait_for(&state, &["bookings", "payments"], min_position).await?;
    let slot = slot.map(|s| s.to_string());
    let Some(customer) = access.list_filter(customer) else {
        return Ok(HttpResponse::Ok().json(Page::<BookingView>::empty(page)));
    };
    let page = queries::bookings(
        &state.read_pool,
        customer,
        slot.as_deref(),
        page,
        state.read_wait,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(page, BookingView::from)))
}
