//! Payments, read from the payments read model.

use actix_web::{HttpResponse, web};
use projections::queries;

use super::params::{ReadParams, wait_for};
use super::path_uuid;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validation::Validator;

/// Reads one payment.
pub async fn get_payment(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    let mut v = Validator::default();
    let min_position = params.min_position(&mut v);
    v.finish()?;
    wait_for(&state, &["payments"], min_position).await?;
    match queries::payment_by_id(&state.pool, id).await? {
        Some(payment) => Ok(HttpResponse::Ok().json(payment)),
        None => Err(ApiError::not_found(
            "payment_not_found",
            format!("no payment {id}"),
        )),
    }
}
