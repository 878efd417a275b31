//! Operations: projections and their rebuilds, dead letters, sagas.

use actix_web::{HttpResponse, web};
use feed::dead_letters::{self, Action, Requested};
use projections::read_model::Projection;
use projections::verify;
use projections::{catalog, status};
use serde::Deserialize;

use crate::problem::ApiError;
use crate::state::AppState;
use crate::validation::Validator;
use crate::views::operations::{
    DeadLetterView, ProjectionEntry, RebuildStarted, SagaView, VerifyReport,
};

use super::params::boolean;

/// Every projection with its position, lag, open dead letters and latest rebuild.
#[utoipa::path(
    get,
    path = "/admin/projections",
    tag = "admin",
    responses(
        (status = 200, description = "Every projection", body = Vec<ProjectionEntry>),
    )
)]
pub async fn list_projections(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let entries: Vec<ProjectionEntry> = status::all(&state.pool)
        .await?
        .into_iter()
        .map(|status| {
            let running_here = state
                .workers
                .local(status.name)
                .is_some_and(|local| *local.progress.borrow() != feed::Checkpoint::START);
            let rebuild = state.rebuilds.state(status.name);
            let last_verify = state.verifications.latest(status.name);
            ProjectionEntry::new(status, running_here, rebuild, last_verify)
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

/// Starts a rebuild in the background; `GET /admin/projections` shows its progress.
#[utoipa::path(
    post,
    path = "/admin/projections/{name}/rebuild",
    tag = "admin",
    params(("name" = String, Path, description = "The projection (`orders`, `bookings`, `stock_items`, `payments`, …)")),
    responses(
        (status = 202, description = "Started", body = RebuildStarted),
        (status = 404, description = "No such projection", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild of it is already running (`rebuild_running`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rebuild_projection(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let projection = projection(&path)?;
    if !state.rebuilds.start(state.pool.clone(), projection) {
        return Err(ApiError::conflict(
            "rebuild_running",
            format!("a rebuild of {} is already running", projection.name()),
        ));
    }
    Ok(HttpResponse::Accepted().json(RebuildStarted {
        projection: projection.name(),
        status: "/admin/projections",
    }))
}

/// The projection called `name`, or 404.
fn projection(name: &str) -> Result<&'static dyn Projection, ApiError> {
    catalog::find(name).ok_or_else(|| {
        ApiError::not_found(
            "projection_not_found",
            format!(
                "no projection {name}; known: {}",
                catalog::names().join(", ")
            ),
        )
    })
}

/// Folds a read model from the event store up to its checkpoint and compares it with its
/// table, row by row, inside one snapshot; sets `reserva_projection_verify_differences`.
#[utoipa::path(
    get,
    path = "/admin/projections/{name}/verify",
    tag = "admin",
    params(("name" = String, Path, description = "The projection (`orders`, `bookings`, `stock_items`, `payments`, …)")),
    responses(
        (status = 200, description = "What the comparison found (`clean` when nothing)", body = VerifyReport),
        (status = 404, description = "No such projection", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An event of the store does not fold (`verify_failed`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_projection(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let projection = projection(&path)?;
    let (progress, _) = tokio::sync::watch::channel(verify::Progress::default());
    let report = verify::verify(&state.pool, projection, false, &progress).await?;
    state.verifications.record(&report);
    Ok(HttpResponse::Ok().json(VerifyReport::from(report)))
}

/// Filters of `GET /admin/dead-letters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this subscription's letters.
    subscription: Option<String>,
    /// `true` includes resolved, skipped and superseded letters.
    #[param(value_type = Option<bool>)]
    all: Option<String>,
}

/// Dead letters, newest first (open ones only unless `all=true`).
#[utoipa::path(
    get,
    path = "/admin/dead-letters",
    tag = "admin",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "At most 500 letters", body = Vec<DeadLetterView>),
    )
)]
pub async fn list_dead_letters(
    state: web::Data<AppState>,
    params: web::Query<DeadLetterParams>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let all = boolean(&mut v, "all", params.all.as_deref()).unwrap_or(false);
    v.finish()?;
    let letters =
        dead_letters::list(&state.pool, params.subscription.as_deref(), !all, 500).await?;
    let letters: Vec<DeadLetterView> = letters.into_iter().map(DeadLetterView::from).collect();
    Ok(HttpResponse::Ok().json(letters))
}

/// Asks the runner to handle a parked event again, then the ones queued behind it.
#[utoipa::path(
    post,
    path = "/admin/dead-letters/{id}/retry",
    tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 202, description = "Requested; the runner carries it out", body = DeadLetterView),
        (status = 404, description = "No such dead letter", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The letter is already closed (`dead_letter_closed`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_dead_letter(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    request(&state, &path, Action::Retry).await
}

/// Asks the runner to drop a parked event and handle the ones queued behind it.
#[utoipa::path(
    post,
    path = "/admin/dead-letters/{id}/skip",
    tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 202, description = "Requested; the runner carries it out", body = DeadLetterView),
        (status = 404, description = "No such dead letter", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The letter is already closed (`dead_letter_closed`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn skip_dead_letter(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    request(&state, &path, Action::Skip).await
}

async fn request(state: &AppState, raw: &str, action: Action) -> Result<HttpResponse, ApiError> {
    let id: i64 = raw.parse().map_err(|_| {
        ApiError::validation(vec![crate::problem::FieldError::new(
            "id",
            "must be an integer",
        )])
    })?;
    match dead_letters::request(&state.pool, id, action).await? {
        Requested::Accepted(letter) => {
            Ok(HttpResponse::Accepted().json(DeadLetterView::from(letter)))
        }
        Requested::NotFound => Err(ApiError::not_found(
            "dead_letter_not_found",
            format!("no dead letter {id}"),
        )),
        Requested::Closed(letter) => Err(ApiError::conflict(
            "dead_letter_closed",
            format!("dead letter {id} is already {}", letter.status),
        )),
    }
}

/// Prometheus exposition, with the database gauges sampled from this server's database first.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "platform",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::scrape(&state.pool, &state.metrics).await)
}

/// `GET /admin/sagas/{id}`: the order's or booking's saga, its state and every step it took.
#[utoipa::path(
    get,
    path = "/admin/sagas/{id}",
    tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The order's or booking's id")),
    responses(
        (status = 200, description = "The saga and its history", body = SagaView),
        (status = 404, description = "No saga for this id (nothing has happened to it yet)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_saga(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::path_uuid(&path)?;
    match commands::sagas::store::find(&state.pool, id).await? {
        Some(saga) => Ok(HttpResponse::Ok().json(SagaView::from(saga))),
        None => Err(ApiError::not_found(
            "saga_not_found",
            format!("no saga for {id} (nothing has happened to it yet)"),
        )),
    }
}
