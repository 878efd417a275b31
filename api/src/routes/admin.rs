//! Operations: projections and their rebuilds, dead letters, sagas.

use actix_web::{HttpResponse, web};
use feed::dead_letters::{self, Action, Requested};
use projections::read_model::Projection;
use projections::verify::{self, Difference};
use projections::{catalog, status};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;
use crate::rebuilds::RebuildState;
use crate::state::AppState;
use crate::validation::Validator;
use crate::verifier::LastVerify;

use super::params::boolean;

/// One projection in `GET /admin/projections`.
#[derive(Serialize)]
struct ProjectionEntry {
    #[serde(flatten)]
    status: status::ProjectionStatus,
    /// Whether this process holds the projection's runner lock (and has started).
    running_here: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuild: Option<RebuildState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_verify: Option<LastVerify>,
}

/// Every projection with its position, lag, open dead letters and latest rebuild.
#[utoipa::path(
    get,
    path = "/admin/projections",
    tag = "admin",
    responses(
        (status = 200, description = "Every projection", body = Vec<crate::openapi::ProjectionEntry>),
    )
)]
pub async fn list_projections(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let entries: Vec<ProjectionEntry> = status::all(&state.pool)
        .await?
        .into_iter()
        .map(|status| ProjectionEntry {
            running_here: state
                .projections
                .get(status.name)
                .is_some_and(|h| *h.progress.borrow() != feed::Checkpoint::START),
            rebuild: state.rebuilds.state(status.name),
            last_verify: state.verifications.latest(status.name),
            status,
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
        (status = 202, description = "Started", body = crate::openapi::RebuildStarted),
        (status = 404, description = "No such projection", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild of it is already running (`rebuild_running`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
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
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "projection": projection.name(),
        "status": "/admin/projections",
    })))
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

/// Differences listed in one verify answer at most (the counts are always complete).
const MAX_LISTED_DIFFERENCES: usize = 1_000;

/// `GET /admin/projections/{name}/verify`: a read model compared with the fold of the events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// The projection.
    projection: &'static str,
    /// Its table.
    table: &'static str,
    /// The checkpoint (global position) the events were folded up to, in the same snapshot
    /// as the table was read.
    position: i64,
    /// `true` when the table equals the fold.
    clean: bool,
    /// Rows the events make that the table lacks.
    missing: usize,
    /// Rows in the table that no events make.
    extra: usize,
    /// Rows whose columns differ.
    differing: usize,
    /// The differences, by row id (at most 1000).
    differences: Vec<VerifyDifference>,
    /// Events folded.
    events: u64,
    /// Rows compared.
    rows: u64,
    /// Wall time in milliseconds.
    elapsed_ms: u64,
    /// Rows compared per second.
    rows_per_second: f64,
}

/// One row that differs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyDifference {
    /// `missing`, `extra` or `differs`.
    kind: &'static str,
    /// The row's id.
    id: String,
    /// The row by the events (`missing`), or each differing column (`differs`).
    #[schema(value_type = Object)]
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    expected: serde_json::Value,
    /// The row in the table (`extra`).
    #[schema(value_type = Object)]
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    found: serde_json::Value,
    /// The columns that differ, with both values (`differs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    columns: Vec<VerifyColumn>,
}

/// One differing column.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyColumn {
    /// The column.
    column: String,
    /// Its value by the events.
    #[schema(value_type = Object)]
    expected: serde_json::Value,
    /// Its value in the table.
    #[schema(value_type = Object)]
    found: serde_json::Value,
}

impl From<verify::Report> for VerifyReport {
    fn from(report: verify::Report) -> Self {
        let (missing, extra, differing) = report.counts();
        let differences = report
            .differences
            .iter()
            .take(MAX_LISTED_DIFFERENCES)
            .map(|d| match d {
                Difference::Missing { id, expected } => VerifyDifference {
                    kind: "missing",
                    id: id.clone(),
                    expected: expected.clone(),
                    found: serde_json::Value::Null,
                    columns: Vec::new(),
                },
                Difference::Extra { id, found } => VerifyDifference {
                    kind: "extra",
                    id: id.clone(),
                    expected: serde_json::Value::Null,
                    found: found.clone(),
                    columns: Vec::new(),
                },
                Difference::Differs { id, columns } => VerifyDifference {
                    kind: "differs",
                    id: id.clone(),
                    expected: serde_json::Value::Null,
                    found: serde_json::Value::Null,
                    columns: columns
                        .iter()
                        .map(|c| VerifyColumn {
                            column: c.column.clone(),
                            expected: c.expected.clone(),
                            found: c.found.clone(),
                        })
                        .collect(),
                },
            })
            .collect();
        Self {
            projection: report.projection,
            table: report.table,
            position: report.checkpoint.global_position,
            clean: report.is_clean(),
            missing,
            extra,
            differing,
            differences,
            events: report.events,
            rows: report.rows,
            elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            rows_per_second: report.rows_per_second(),
        }
    }
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
        (status = 404, description = "No such projection", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An event of the store does not fold (`verify_failed`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
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
        (status = 200, description = "At most 500 letters", body = Vec<crate::openapi::DeadLetter>),
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
    Ok(HttpResponse::Ok().json(letters))
}

/// Asks the runner to handle a parked event again, then the ones queued behind it.
#[utoipa::path(
    post,
    path = "/admin/dead-letters/{id}/retry",
    tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 202, description = "Requested; the runner carries it out", body = crate::openapi::DeadLetter),
        (status = 404, description = "No such dead letter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The letter is already closed (`dead_letter_closed`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
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
        (status = 202, description = "Requested; the runner carries it out", body = crate::openapi::DeadLetter),
        (status = 404, description = "No such dead letter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The letter is already closed (`dead_letter_closed`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
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
        Requested::Accepted(letter) => Ok(HttpResponse::Accepted().json(letter)),
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
        (status = 200, description = "The saga and its history", body = crate::openapi::SagaView),
        (status = 404, description = "No saga for this id (nothing has happened to it yet)", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_saga(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::path_uuid(&path)?;
    match commands::sagas::store::find(&state.pool, id).await? {
        Some(saga) => Ok(HttpResponse::Ok().json(saga)),
        None => Err(ApiError::not_found(
            "saga_not_found",
            format!("no saga for {id} (nothing has happened to it yet)"),
        )),
    }
}
