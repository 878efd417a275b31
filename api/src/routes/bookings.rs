//! Bookings: guests on a time slot. The booking saga comes with the feed.

use actix_web::{HttpResponse, web};
use domain::booking::{Booking, BookingCommand};
use domain::stock_item::{StockItem, StockKind};
use domain::{BookingId, CustomerId, Money};
use serde::{Deserialize, Serialize};

use super::{accepted_command, path_uuid};
use crate::extract::{RequestContext, ValidJson};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::validation::{Validator, accepted};

/// `POST /api/v1/bookings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceBooking {
    customer_id: String,
    slot_sku: String,
    guests: i64,
}

/// `GET /api/v1/bookings/{id}`.
#[derive(Debug, Serialize)]
pub struct BookingView {
    id: BookingId,
    customer_id: Option<CustomerId>,
    slot_sku: Option<String>,
    guests: u32,
    status: &'static str,
    total: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
}

/// Records a booking in `PENDING_PAYMENT`.
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
        customer_id: CustomerId(accepted(customer)?),
        slot_sku,
        guests: accepted(guests)?,
        unit_price,
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

/// Reads one booking (from its aggregate until the bookings read model exists).
pub async fn get_booking(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = BookingId(path_uuid(&path)?);
    let booking = state.bus.load::<Booking>(&id.to_string()).await?;
    let Some(status) = booking.status() else {
        return Err(ApiError::not_found(
            "booking_not_found",
            format!("no booking {id}"),
        ));
    };
    Ok(HttpResponse::Ok().json(BookingView {
        id,
        customer_id: booking.customer_id(),
        slot_sku: booking.slot_sku().map(ToString::to_string),
        guests: booking.guests(),
        status: status.as_str(),
        total: booking.total(),
        failure_reason: booking.failure_reason().map(str::to_owned),
    }))
}
