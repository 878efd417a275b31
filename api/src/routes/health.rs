//! Liveness and readiness probes.
//!
//! `live` says the process serves HTTP at all (restart it if not). `ready` says this replica
//! should get traffic: the database answers, its schema is the one this build expects, and
//! every projection is close enough to the feed that reads are not served badly stale.

use actix_web::{HttpResponse, web};
use projections::{catalog, status};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

/// The process is up.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "platform",
    responses((status = 200, description = "Up", body = HealthStatus))
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok",
        checks: None,
    })
}

/// `200` of the health probes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthStatus {
    /// `ok` (live) or `ready`.
    #[schema(example = "ok")]
    status: &'static str,
    /// `ready` only: each check (`database`, `migrations`, `projections`) with `ok` and what
    /// it saw, and `instance`: this instance's role, whether its rate limits are shared, and
    /// whether it publishes integration events.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    checks: Option<serde_json::Value>,
}

/// One readiness check: whether it passed and what it saw.
#[derive(Debug, Serialize)]
struct Check {
    ok: bool,
    #[serde(flatten)]
    value: serde_json::Value,
}

impl Check {
    fn failing(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            value: json!({"error": message.into()}),
        }
    }
}

/// 200 with every check and its value when the database answers, every migration of this
/// build is applied, and no projection lags more than `RESERVA_READY__MAX_LAG_EVENTS` events;
/// otherwise 503 `not_ready` naming each failing check, so a load balancer stops sending
/// traffic until it passes.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "platform",
    responses((status = 200, description = "Ready for traffic", body = HealthStatus))
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pool = &state.pool;
    let mut checks = BTreeMap::new();
    let database = sqlx::query("SELECT 1").execute(pool).await;
    checks.insert(
        "database",
        match database {
            Ok(_) => Check {
                ok: true,
                value: json!({}),
            },
            Err(error) => Check::failing(error.to_string()),
        },
    );
    checks.insert(
        "instance",
        Check {
            ok: true,
            value: json!(state.instance),
        },
    );
    if checks["database"].ok {
        checks.insert("migrations", migrations(pool).await);
        checks.insert(
            "projections",
            projections(pool, state.ready_max_lag_events).await,
        );
    }
    let failing: Vec<FieldError> = checks
        .iter()
        .filter(|(_, check)| !check.ok)
        .map(|(name, check)| FieldError::new(*name, check.value.to_string()))
        .collect();
    if failing.is_empty() {
        return Ok(HttpResponse::Ok().json(HealthStatus {
            status: "ready",
            checks: Some(json!(checks)),
        }));
    }
    let names: Vec<&str> = failing.iter().map(|f| f.field.as_str()).collect();
    Err(ApiError::not_yet(
        "not_ready",
        format!("not ready: {} failing", names.join(", ")),
    )
    .with_errors(failing))
}

/// Every up migration embedded in this build has a successful row in `_sqlx_migrations`.
async fn migrations(pool: &PgPool) -> Check {
    let rows: Vec<(i64, bool)> =
        match sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            Err(error) => return Check::failing(format!("cannot read _sqlx_migrations: {error}")),
        };
    let applied: HashMap<i64, bool> = rows.into_iter().collect();
    let expected: Vec<i64> = commands::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    let missing: Vec<i64> = expected
        .iter()
        .copied()
        .filter(|v| !applied.contains_key(v))
        .collect();
    let failed: Vec<i64> = expected
        .iter()
        .copied()
        .filter(|v| applied.get(v) == Some(&false))
        .collect();
    Check {
        ok: missing.is_empty() && failed.is_empty(),
        value: json!({
            "expected": expected.len(),
            "applied": expected.len() - missing.len() - failed.len(),
            "missing": missing,
            "failed": failed,
        }),
    }
}

/// Every projection's lag in events (counted up to just past the bound).
async fn projections(pool: &PgPool, max_lag: u64) -> Check {
    let cap = i64::try_from(max_lag).unwrap_or(i64::MAX);
    let mut lags = BTreeMap::new();
    let mut behind = Vec::new();
    for name in catalog::names() {
        match status::lag_events_capped(pool, name, cap).await {
            Ok(lag) => {
                if lag > cap {
                    behind.push(name);
                }
                lags.insert(name, lag);
            }
            Err(error) => return Check::failing(format!("cannot read {name}'s lag: {error}")),
        }
    }
    Check {
        ok: behind.is_empty(),
        value: json!({"max_lag_events": max_lag, "lag_events": lags, "behind": behind}),
    }
}
