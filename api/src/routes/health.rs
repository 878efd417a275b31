//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::problem::ApiError;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "platform",
    responses((status = 200, description = "Up", body = crate::openapi::HealthStatus))
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers; otherwise 503 so a load balancer stops sending traffic.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "platform",
    responses((status = 200, description = "Ready for traffic", body = crate::openapi::HealthStatus))
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    sqlx::query("SELECT 1")
        .execute(state.bus.pool())
        .await
        .map_err(ApiError::unavailable)?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
