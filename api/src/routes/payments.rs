//! Payments, read from the payments read model.

use actix_web::{HttpResponse, web};
use projections::queries;

use super::params::{ReadParams, found, settle};
use super::path_uuid;
use crate::problem::ApiError;
use crate::state::AppState;

/// Reads one payment.
#[utoipa::path(
    get,
    path = "/api/v1/payments/{id}",
    tag = "payments",
    params(("id" = uuid::Uuid, Path, description = "The payment's id"), ReadParams),
    responses(
        (status = 200, description = "The payment", body = projections::queries::PaymentView),
        (status = 404, description = "No such payment", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_payment(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    settle(&state, &params, &["payments"]).await?;
    found(
        queries::payment_by_id(&state.pool, id).await?,
        "payment_not_found",
        || format!("no payment {id}"),
    )
}
