//! `GET /health/live` and `GET /health/ready`: ready only with the database answering, every
//! migration applied and every projection within the lag bound.

use serde_json::Value;
use sqlx::Connection as _;
use tests::{TestApp, eventually, spawn_app, spawn_app_with};

/// The readiness answer: status and body, checking the problem shape of a 503.
async fn ready(app: &TestApp) -> (u16, Value) {
    let response = app.get("/health/ready").await;
    let status = response.status().as_u16();
    if status == 503 {
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    (status, response.json().await.unwrap())
}

/// The names of the failing checks in a `not_ready` problem.
fn failing(problem: &Value) -> Vec<&str> {
    assert_eq!(problem["code"], "not_ready", "{problem}");
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_fresh_app_is_live_and_ready_with_every_check_listed() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let live = app.get("/health/live").await;
    let (status, body) = ready(&app).await;

    // Assert
    assert_eq!(live.status(), 200);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    let checks = &body["checks"];
    assert_eq!(checks["database"]["ok"], true, "{body}");
    let migrations = &checks["migrations"];
    assert_eq!(migrations["ok"], true, "{body}");
    let expected = commands::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    assert_eq!(migrations["applied"], expected, "{body}");
    assert_eq!(checks["projections"]["ok"], true, "{body}");
    assert_eq!(checks["projections"]["max_lag_events"], 10_000);
    for name in projections::catalog::names() {
        assert_eq!(
            checks["projections"]["lag_events"][name], 0,
            "{name}: {body}"
        );
    }
}

#[tokio::test]
async fn a_missing_or_failed_migration_makes_the_app_not_ready() {
    // Arrange
    let app = spawn_app().await;
    let latest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE applied_backup AS SELECT * FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(&app.pool)
        .await
        .unwrap();

    // Act & assert: the latest migration recorded as failed.
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = $1")
        .bind(latest)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, problem) = ready(&app).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(failing(&problem), ["migrations"]);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("\"failed\":[{latest}]")),
        "{problem}"
    );

    // Act & assert: the latest migration not recorded at all.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, problem) = ready(&app).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(failing(&problem), ["migrations"]);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("\"missing\":[{latest}]")),
        "{problem}"
    );

    // Act & assert: recorded as applied again, ready again.
    sqlx::query("INSERT INTO _sqlx_migrations SELECT * FROM applied_backup")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_projection_behind_the_lag_bound_makes_the_app_not_ready_until_it_catches_up() {
    // Arrange: no lag allowed, and the orders projection cannot take its per-batch lock.
    let app = spawn_app_with(|settings| settings.ready_max_lag_events = 0).await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    let blocker = app
        .hold_lock(
            "SELECT pg_advisory_lock(hashtextextended('reserva.subscription.swap.orders', 0))",
        )
        .await;

    // Act: an event the orders projection cannot pass.
    app.register_product("READY-1", 3).await;

    // Assert
    // The other projections catch up; orders stays behind.
    let problem = eventually("the app to report orders alone behind", || async {
        let (status, problem) = ready(&app).await;
        let orders_alone = problem["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"behind\":[\"orders\"]"));
        (status == 503 && orders_alone).then_some(problem)
    })
    .await;
    assert_eq!(failing(&problem), ["projections"]);
    blocker.close().await.unwrap();
    app.catch_up().await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
}
