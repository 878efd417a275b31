//! Query-string parameters shared by the read endpoints, and read-your-writes.

use actix_web::{HttpResponse, web};
use projections::queries::PageRequest;
use projections::wait;
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;
use crate::state::AppState;
use crate::validation::Validator;

/// Default and largest page sizes.
const PER_PAGE: u32 = 20;
const MAX_PER_PAGE: u32 = 100;

/// Parameters every read accepts. Kept as text so that bad values become field errors
/// with the parameter's name rather than a generic parse failure.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Wait until the read model has handled this global position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<String>,
    /// 1-based page.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100_000)]
    pub page: Option<String>,
    /// Rows per page (1–100, default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
}

impl ReadParams {
    /// The validated `min_position`.
    pub fn min_position(&self, v: &mut Validator) -> Option<i64> {
        let raw = self.min_position.as_deref()?;
        match raw.parse::<i64>() {
            Ok(position) if position >= 0 => Some(position),
            _ => {
                v.error("min_position", "must be a non-negative integer");
                None
            }
        }
    }

    /// The validated page.
    pub fn page(&self, v: &mut Validator) -> PageRequest {
        let page = number(v, "page", self.page.as_deref(), 1, 1, 100_000);
        let per_page = number(
            v,
            "per_page",
            self.per_page.as_deref(),
            PER_PAGE,
            1,
            MAX_PER_PAGE,
        );
        PageRequest { page, per_page }
    }
}

fn number(
    v: &mut Validator,
    field: &str,
    raw: Option<&str>,
    default: u32,
    min: u32,
    max: u32,
) -> u32 {
    let Some(raw) = raw else {
        return default;
    };
    match raw.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            v.error(field, format!("must be an integer from {min} to {max}"));
            default
        }
    }
}

/// Reads an optional boolean parameter.
pub fn boolean(v: &mut Validator, field: &str, raw: Option<&str>) -> Option<bool> {
    match raw? {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            v.error(field, "must be true or false");
            None
        }
    }
}

/// Waits until every projection in `names` has handled `min_position` (read-your-writes),
/// for at most the configured wait; then answers 503 `projection_behind`.
pub async fn wait_for(
    state: &web::Data<AppState>,
    names: &[&str],
    min_position: Option<i64>,
) -> Result<(), ApiError> {
    let Some(position) = min_position else {
        return Ok(());
    };
    // One deadline for all: the client waits at most `read_wait` however many models it reads.
    let deadline = tokio::time::Instant::now() + state.read_wait;
    for name in names {
        // This process's runner reports commits on the primary; a replica shows them only
        // once it has replayed them, so there its own copy of the checkpoint is the witness.
        let local = if state.reads_from_replica {
            None
        } else {
            state.workers.local(name)
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        wait::until_reached(&state.read_pool, local, name, position, left).await?;
    }
    Ok(())
}

/// The start of every single-resource read: validate `min_position`, then wait for `names`.
pub async fn settle(
    state: &web::Data<AppState>,
    params: &ReadParams,
    names: &[&str],
) -> Result<(), ApiError> {
    let mut v = Validator::default();
    let min_position = params.min_position(&mut v);
    v.finish()?;
    wait_for(state, names, min_position).await
}

/// 200 with the view, or 404 problem with `code` and `missing`'s detail.
pub fn found<T: Serialize>(
    view: Option<T>,
    code: &'static str,
    missing: impl FnOnce() -> String,
) -> Result<HttpResponse, ApiError> {
    match view {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::not_found(code, missing())),
    }
}
