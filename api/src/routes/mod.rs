//! The HTTP surface: `/api/v1` commands and queries, health probes, the OpenAPI document.

pub mod admin;
pub mod bookings;
pub mod health;
pub mod orders;
pub mod params;
pub mod payments;
pub mod stock_items;
pub mod webhooks;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use commands::bus::Routed;
use commands::{CommandError, Committed};
use domain::booking::{Booking, BookingCommand, BookingError};
use domain::order::{Order, OrderCommand, OrderError};
use domain::{CustomerId, DomainError, Sku};
use serde::{Deserialize, Serialize};

use crate::extract::RequestContext;
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::validation::{Validator, accepted};

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|error, _| {
        ApiError::bad_request("malformed_query", error.to_string()).into()
    }))
    .service(
        web::scope("/api/v1")
            .service(
                resource("/stock-items")
                    .post(stock_items::register_stock_item)
                    .get(stock_items::list_stock_items),
            )
            .service(resource("/stock-items/{sku}").get(stock_items::get_stock_item))
            .service(resource("/stock-items/{sku}/restock").post(stock_items::restock))
            .service(
                resource("/orders")
                    .post(orders::place_order)
                    .get(orders::list_orders),
            )
            .service(resource("/orders/{id}").get(orders::get_order))
            .service(resource("/orders/{id}/cancel").post(orders::cancel_order))
            .service(
                resource("/bookings")
                    .post(bookings::place_booking)
                    .get(bookings::list_bookings),
            )
            .service(resource("/bookings/{id}").get(bookings::get_booking))
            .service(resource("/bookings/{id}/cancel").post(bookings::cancel_booking))
            .service(resource("/payments/{id}").get(payments::get_payment)),
    )
    .service(
        web::scope("/admin")
            .service(resource("/projections").get(admin::list_projections))
            .service(resource("/projections/{name}/rebuild").post(admin::rebuild_projection))
            .service(resource("/projections/{name}/verify").get(admin::verify_projection))
            .service(resource("/dead-letters").get(admin::list_dead_letters))
            .service(resource("/dead-letters/{id}/retry").post(admin::retry_dead_letter))
            .service(resource("/dead-letters/{id}/skip").post(admin::skip_dead_letter))
            .service(resource("/sagas/{id}").get(admin::get_saga)),
    )
    .service(resource("/metrics").get(admin::metrics))
    .service(
        resource("/webhooks/stripe")
            .app_data(web::PayloadConfig::new(webhooks::MAX_BODY))
            .post(webhooks::stripe),
    )
    .service(web::resource("/health/live").get(health::live))
    .service(web::resource("/health/ready").get(health::ready))
    // GET /openapi.json and the Swagger UI at /docs/ (/docs redirects there).
    .service(web::redirect("/docs", "/docs/"))
    .service(crate::openapi::service());
}

/// The platform endpoints: the Stripe webhook (authenticated by its signature), health probes,
/// metrics and the API description. They need no token and spend no rate-limit budget: Stripe
/// must always reach us, probes and scrapes must not be starved by a client's traffic, and the
/// docs cost nothing.
pub fn is_platform(path: &str) -> bool {
    matches!(
        path,
        "/webhooks/stripe" | "/metrics" | "/openapi.json" | "/docs"
    ) || path.starts_with("/health/")
        || path.starts_with("/docs/")
}

/// A resource whose other methods answer 405 problem+json.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// 404 problem for any unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
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
    /// The command that cancels it.
    fn cancel(reason: String) -> Self::Command;
    /// The refusal an unknown one gets (and someone else's, so ids cannot be probed).
    fn not_found() -> Self::Error;
}

impl Cancellable for Order {
    const COLLECTION: &'static str = "/api/v1/orders";
    fn owner(&self) -> Option<CustomerId> {
        self.customer_id()
    }
    fn cancel(reason: String) -> OrderCommand {
        OrderCommand::Cancel { reason }
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
    fn cancel(reason: String) -> BookingCommand {
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
        .execute::<A>(&id, A::cancel(reason), &ctx.metadata())
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
