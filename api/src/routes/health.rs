//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::problem::ApiError;
use crate::state::AppState;

/// The process is up.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers; otherwise 503 so a load balancer stops sending traffic.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    sqlx::query("SELECT 1")
        .execute(state.bus.pool())
        .await
        .map_err(ApiError::unavailable)?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
