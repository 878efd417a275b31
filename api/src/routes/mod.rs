//! The HTTP surface: `/api/v1` commands and queries, health probes, the OpenAPI document.

pub mod admin;
pub mod audit;
pub mod bookings;
pub mod health;
pub mod live;
pub mod orders;
pub mod params;
pub mod payments;
pub mod stock_items;
pub mod table;
pub mod webhook_endpoints;
pub mod webhooks;

pub use table::{GUARDED, Guards, configure};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use commands::bus::Routed;
use commands::{CommandError, Committed};
use domain::booking::{Booking, BookingCommand, BookingError};
use domain::order::{Canceller, Order, OrderCommand, OrderError};
use domain::{CustomerId, DomainError, Sku};
use serde::{Deserialize, Serialize};

use crate::extract::RequestContext;
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::validation::{Validator, accepted};

/// A resource whose other methods answer 405 problem+json.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// 404 problem for any unknown path; with auth on, 401 first for a caller without a valid
/// token, so the route table is not shown to strangers.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    crate::auth::guard::verified_caller(&req).await?;
    Err(ApiError::not_found("route_not_found", "no such endpoint"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}

/// The `202 Accepted` answer of every command.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommandAccepted<'a> {
    /// The affected aggregate's id (a UUID, or the SKU of a stock item).
    id: &'a str,
    /// Global position of the command's last event: pass it as `min_position` to read your
    /// write. `null` when the command recorded nothing new (an idempotent repeat).
    position: Option<i64>,
}

fn accepted_command(id: &str, location: &str, committed: Committed) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(CommandAccepted {
            id,
            position: committed.position,
        })
}

fn path_sku(raw: &str) -> Result<Sku, ApiError> {
    Sku::parse(raw).map_err(|e| ApiError::validation(vec![FieldError::new("sku", e.to_string())]))
}

fn path_uuid(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::validation(vec![FieldError::new("id", "must be a UUID")]))
}

/// Longest cancellation reason kept, in characters.
const MAX_REASON_CHARS: usize = 500;

/// The reason recorded when a cancel names none.
const DEFAULT_CANCEL_REASON: &str = "cancelled by customer";

/// The optional body of `POST /api/v1/orders/{id}/cancel` and `/bookings/{id}/cancel`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (at most 500 characters); `cancelled by customer` when absent.
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// An order or a booking: what the one cancel handler needs to know of it.
trait Cancellable: Routed
where
    Self::Command: Clone + Send,
{
    /// Where it is read, e.g. `/api/v1/orders`.
    const COLLECTION: &'static str;
    /// Its customer, once placed.
    fn owner(&self) -> Option<CustomerId>;
    /// The command that cancels it; `by_staff` when an administrator asked.
    fn cancel(reason: String, by_staff: bool) -> Self::Command;
    /// The refusal an unknown one gets (and someone else's, so ids cannot be probed).
    fn not_found() -> Self::Error;
}

impl Cancellable for Order {
    const COLLECTION: &'static str = "/api/v1/orders";
    fn owner(&self) -> Option<CustomerId> {
        self.customer_id()
    }
    fn cancel(reason: String, by_staff: bool) -> OrderCommand {
        let by = if by_staff {
            Canceller::Admin
        } else {
            Canceller::Customer
        };
        OrderCommand::Cancel { reason, by }
    }
    fn not_found() -> OrderError {
        OrderError::NotFound
    }
}

impl Cancellable for Booking {
    const COLLECTION: &'static str = "/api/v1/bookings";
    fn owner(&self) -> Option<CustomerId> {
        self.customer_id()
    }
    fn cancel(reason: String, _by_staff: bool) -> BookingCommand {
        BookingCommand::Cancel { reason }
    }
    fn not_found() -> BookingError {
        BookingError::NotFound
    }
}

/// `POST …/{id}/cancel` of an order or a booking: the caller must own it (anyone else's
/// answers as an unknown one), then the aggregate decides whether it may still be cancelled.
async fn cancel<A>(
    state: &AppState,
    ctx: &RequestContext,
    raw_id: &str,
    body: Option<CancelBody>,
) -> Result<HttpResponse, ApiError>
where
    A: Cancellable,
    A::Command: Clone + Send,
    A::Error: DomainError,
{
    let (id, reason) = cancel_input(raw_id, body)?;
    let id = id.to_string();
    if !ctx.access.sees_everything() {
        let owner = state.bus.load::<A>(&id).await?.owner();
        if owner.is_some_and(|owner| !ctx.access.may_act_for(owner.0)) {
            return Err(CommandError::Rejected(A::not_found()).into());
        }
    }
    let committed = state
        .bus
        .execute::<A>(
            &id,
            A::cancel(reason, ctx.access.sees_everything()),
            &ctx.metadata(),
        )
        .await?;
    Ok(accepted_command(
        &id,
        &format!("{}/{id}", A::COLLECTION),
        committed,
    ))
}

/// The id in the path and the reason of a cancel (the default one when the body or its
/// `reason` is absent), with every field error of both at once.
fn cancel_input(raw_id: &str, body: Option<CancelBody>) -> Result<(uuid::Uuid, String), ApiError> {
    let mut v = Validator::default();
    let id = v.uuid("id", raw_id);
    let reason = match body.and_then(|b| b.reason) {
        Some(raw) => v.text("reason", &raw, MAX_REASON_CHARS),
        None => Some(DEFAULT_CANCEL_REASON.to_owned()),
    };
    v.finish()?;
    Ok((accepted(id)?, accepted(reason)?))
}
