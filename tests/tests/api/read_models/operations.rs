//! The operations endpoints: `/admin/projections` positions and lag, and the projection metrics.

use super::{create_payment, get_ok, mxn};
use domain::{OrderId, Owner};
use projections::catalog;
use serde_json::json;
use sqlx::Connection;
use std::time::Duration;
use tests::spawn_app_without_sagas;

#[tokio::test]
async fn admin_projections_lists_every_projection_with_its_position_and_lag() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("ADMIN", 5).await;
    let head = app.catch_up().await;

    // Act
    let caught_up = get_ok(&app, "/admin/projections").await;
    // The payments runner cannot take its per-batch lock while we hold it exclusively.
    let blocker = app
        .hold_lock(
            "SELECT pg_advisory_lock(hashtextextended('reserva.subscription.swap.payments', 0))",
        )
        .await;
    let payment = create_payment(&app, Owner::Order(OrderId::new_random()), mxn(100), "s").await;
    let written = app.head().await;
    for name in ["orders", "bookings", "stock_items"] {
        projections::wait::until_reached(&app.pool, None, name, written, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let behind = get_ok(&app, "/admin/projections").await;
    blocker.close().await.unwrap();
    app.catch_up().await;
    let released = get_ok(
        &app,
        &format!("/api/v1/payments/{payment}?min_position={written}"),
    )
    .await;
    let after = get_ok(&app, "/admin/projections").await;

    // Assert
    let entries = caught_up.as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, catalog::names());
    for (entry, projection) in entries.iter().zip(catalog::all()) {
        assert_eq!(entry["table"], projection.table());
        assert_eq!(entry["position"], head, "{entry}");
        assert_eq!(
            (&entry["lag_events"], &entry["lag_seconds"]),
            (&json!(0), &json!(0.0))
        );
        assert_eq!(entry["open_dead_letters"], 0);
        assert_eq!(entry["running_here"], true);
        assert!(entry.get("rebuild").is_none(), "{entry}");
    }
    for entry in behind.as_array().unwrap() {
        if entry["name"] == "payments" {
            assert_eq!(entry["position"], head, "{entry}");
            assert_eq!(entry["lag_events"], 1, "{entry}");
            assert!(entry["lag_seconds"].as_f64().unwrap() > 0.0, "{entry}");
        } else {
            assert_eq!(entry["position"], written, "{entry}");
            assert_eq!(entry["lag_events"], 0, "{entry}");
        }
    }
    assert_eq!(released["status"], "created");
    for entry in after.as_array().unwrap() {
        assert_eq!(
            (&entry["position"], &entry["lag_events"]),
            (&json!(written), &json!(0))
        );
    }
}

#[tokio::test]
async fn metrics_export_subscription_lag_and_projection_gauges_after_traffic() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("METRIC", 3).await;
    app.post(
        "/api/v1/stock-items/METRIC/restock",
        &json!({"quantity": 2}),
    )
    .await;
    app.catch_up().await;
    let mut wanted = vec!["reserva_feed_oldest_transaction_age_seconds ".to_owned()];
    for name in catalog::names() {
        for metric in [
            "reserva_subscription_lag_events",
            "reserva_subscription_lag_seconds",
            "reserva_dead_letters_open",
        ] {
            wanted.push(format!("{metric}{{subscription=\"{name}\"}} "));
        }
    }
    // Recorded as each projection commits a batch (the stock events of this test at least).
    wanted.push("reserva_subscription_events_total{subscription=\"stock_items\"} ".into());
    // A histogram: buckets, sum and count per subscription.
    for series in [
        "bucket{subscription=\"stock_items\",le=\"+Inf\"}",
        "sum{subscription=\"stock_items\"}",
        "count{subscription=\"stock_items\"}",
    ] {
        wanted.push(format!("reserva_projection_lag_seconds_{series} "));
    }

    // Act: gauges are sampled on each scrape; the histogram needs a batch handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (missing, response) = loop {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|m| !body.contains(m.as_str()))
            .collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break (
                missing.into_iter().cloned().collect::<Vec<_>>(),
                (content_type, body),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Assert
    let (content_type, body) = response;
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(missing.is_empty(), "missing {missing:?} in:\n{body}");
}
