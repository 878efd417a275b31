//! Payments, read from the payments read model.

use actix_web::{HttpResponse, web};
use domain::payment::PaymentStatus;
use projections::queries;
use serde::Deserialize;

use crate::validation::Validator;
use crate::views::read::{Owned, Page, PaymentView};

use super::params::{ReadParams, found, settle, wait_for};
use super::path_uuid;
use crate::auth::Access;
use crate::problem::ApiError;
use crate::state::AppState;

/// Reads one payment. A customer reads only the payments of its own orders and bookings;
/// anyone else's answers 404 like an unknown id.
#[utoipa::path(
    get,
    path = "/api/v1/payments/{id}",
    tag = "payments",
    params(("id" = uuid::Uuid, Path, description = "The payment's id"), ReadParams),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 404, description = "No such payment", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_payment(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    settle(&state, &params, &["payments"]).await?;
    let mut payment = queries::payment_by_id(&state.read_pool, id)
        .await?
        .map(PaymentView::from);
    if let Some(p) = &payment
        && !access.sees_everything()
        && !owned_by_caller(&state, &access, &p.owner).await?
    {
        payment = None;
    }
    found(payment, "payment_not_found", || format!("no payment {id}"))
}

/// Whether the order or booking a payment belongs to is the caller's (from the read models;
/// one the read model has not seen yet counts as not the caller's).
async fn owned_by_caller(
    state: &AppState,
    access: &Access,
    owner: &Owned,
) -> Result<bool, ApiError> {
    let customer = queries::customer_of(&state.read_pool, &owner.kind, owner.id).await?;
    Ok(customer.is_some_and(|c| access.may_act_for(c)))
}

/// Filters of `GET /api/v1/payments`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentListParams {
    /// Only the payments of this customer's orders and bookings (a customer always gets its
    /// own).
    #[param(value_type = Option<uuid::Uuid>)]
    customer: Option<String>,
    /// Only payments in this status (`created`, `requires_action`, `succeeded`, `failed`,
    /// `canceled`, `refunded`).
    status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    read: ReadParams,
}

/// Lists payments newest first: a customer's payment history, or every payment for admins.
#[utoipa::path(
    get,
    path = "/api/v1/payments",
    tag = "payments",
    params(PaymentListParams, ReadParams),
    responses(
        (status = 200, description = "One page of payments", body = Page<PaymentView>),
        (status = 400, description = "Invalid filters", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_payments(
    state: web::Data<AppState>,
    access: Access,
    params: web::Query<PaymentListParams>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let customer = params
        .customer
        .as_deref()
        .and_then(|c| v.uuid("customer", c));
    let status = params.status.as_deref().map(str::to_ascii_lowercase);
    if let Some(status) = &status
        && !PaymentStatus::ALL.iter().any(|s| s.as_str() == status)
    {
        let names: Vec<&str> = PaymentStatus::ALL.iter().map(|s| s.as_str()).collect();
        v.error("status", format!("must be one of {}", names.join(", ")));
    }
    let min_position = params.read.min_position(&mut v);
    let page = params.read.page(&mut v);
    v.finish()?;
    // A customer's list joins its orders and bookings: all three models must have the position.
    wait_for(&state, &["payments", "orders", "bookings"], min_position).await?;
    let Some(customer) = access.list_filter(customer) else {
        return Ok(HttpResponse::Ok().json(Page::<PaymentView>::empty(page)));
    };
    let page = queries::payments(&state.read_pool, customer, status.as_deref(), page).await?;
    Ok(HttpResponse::Ok().json(Page::of(page, PaymentView::from)))
}
