//! Payments, read from the payments read model.

use actix_web::{HttpResponse, web};
use projections::queries;

use crate::views::read::{Owned, PaymentView};

use super::params::{ReadParams, found, settle};
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
