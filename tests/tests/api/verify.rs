//! `reserva projections verify`: a read model folded from the store equals its table on an
//! untouched store, every raw edit of the table is reported with its columns, `--repair`
//! fixes exactly those rows, and live writes or held events never show as differences.

use api::operate::{self, Verified};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tests::{TestApp, eventually, spawn_app, spawn_app_with};
use uuid::Uuid;

/// Orders (completed by the simulated gateway), a booking, a restock: every projection has
/// rows. Returns once every projection has caught up.
async fn traffic(app: &TestApp) {
    for sku in ["MUG-1", "MUG-2", "MUG-3"] {
        app.register_product(sku, 50).await;
    }
    let slot = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "TOUR-1", "name": "Tour", "kind": "time_slot", "quantity": 20,
                    "starts_at": "2030-01-01T10:00:00Z",
                    "unit_price": {"amount": 2500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(slot.status(), 202);
    let customer = Uuid::new_v4();
    for sku in ["MUG-1", "MUG-2", "MUG-1"] {
        let placed = app
            .post(
                "/api/v1/orders",
                &json!({"customer_id": customer, "items": [{"sku": sku, "quantity": 2}]}),
            )
            .await;
        assert_eq!(placed.status(), 202);
    }
    let booked = app
        .post(
            "/api/v1/bookings",
            &json!({"customer_id": customer, "slot_sku": "TOUR-1", "guests": 2}),
        )
        .await;
    assert_eq!(booked.status(), 202);
    let restocked = app
        .post("/api/v1/stock-items/MUG-3/restock", &json!({"quantity": 5}))
        .await;
    assert_eq!(restocked.status(), 202);
    eventually("the orders to complete", || async {
        let (_, page) = app
            .get_json(&format!("/api/v1/orders?customer={customer}"))
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 3 && items.iter().all(|o| o["status"] == "COMPLETED")).then_some(())
    })
    .await;
    app.catch_up().await;
}

async fn verify(app: &TestApp, name: Option<&str>, repair: bool) -> (Verified, String) {
    let mut out = Vec::new();
    let verified = operate::verify(&app.pool, name, name.is_none(), repair, &mut out)
        .await
        .expect("verify runs");
    (verified, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn an_untouched_store_verifies_clean_for_every_projection() {
    // Arrange
    let app = spawn_app().await;
    traffic(&app).await;

    // Act
    let (verified, out) = verify(&app, None, false).await;

    // Assert
    assert_eq!(verified.exit_code(), 0, "{out}");
    assert_eq!(verified.reports.len(), projections::catalog::names().len());
    for report in &verified.reports {
        assert!(report.is_clean(), "{out}");
        assert!(
            report.events > 0,
            "{} folded nothing: {out}",
            report.projection
        );
        assert!(
            out.contains(&format!("{}: equals the events", report.projection)),
            "{out}"
        );
    }
    let stock = verified
        .reports
        .iter()
        .find(|r| r.projection == "stock_items")
        .unwrap();
    assert_eq!(stock.rows, 4, "three products and a slot");
}

#[tokio::test]
async fn a_deleted_an_added_and_a_changed_row_are_each_reported_and_repaired() {
    // Arrange: three raw edits of the stock table behind the projector's back.
    let app = spawn_app().await;
    traffic(&app).await;
    let on_hand: i64 = sqlx::query_scalar("SELECT on_hand FROM rm_stock_items WHERE id = 'MUG-2'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let before = app.snapshot("rm_stock_items").await;
    for edit in [
        "DELETE FROM rm_stock_items WHERE id = 'MUG-1'",
        "INSERT INTO rm_stock_items SELECT 'GHOST', name, kind, starts_at, on_hand, reserved, \
           available, low_stock_threshold, low_stock, unit_price, position, updated_at, depleted \
         FROM rm_stock_items WHERE id = 'MUG-3'",
        "UPDATE rm_stock_items SET on_hand = on_hand + 7 WHERE id = 'MUG-2'",
    ] {
        sqlx::query(edit).execute(&app.pool).await.unwrap();
    }

    // Act
    let (found, out) = verify(&app, Some("stock_items"), false).await;
    let (_, over_http) = app.get_json("/admin/projections/stock_items/verify").await;

    // Assert: each edit, with the column that differs; exit code 1.
    assert_eq!(found.exit_code(), 1, "{out}");
    let report = &found.reports[0];
    assert_eq!(report.counts(), (1, 1, 1), "{out}");
    assert!(out.contains("missing  MUG-1"), "{out}");
    assert!(out.contains("extra    GHOST"), "{out}");
    assert!(
        out.contains(&format!(
            "differs  MUG-2  on_hand: expected {on_hand}, found {}",
            on_hand + 7
        )),
        "{out}"
    );
    assert!(
        out.contains("stock_items: 3 differences (1 missing, 1 extra, 1 differing)"),
        "{out}"
    );
    assert_eq!(over_http["clean"], false, "{over_http}");
    assert_eq!(
        (
            &over_http["missing"],
            &over_http["extra"],
            &over_http["differing"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{over_http}"
    );
    let differs = over_http["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "differs")
        .unwrap();
    assert_eq!(
        differs["columns"],
        json!([{"column": "on_hand", "expected": on_hand, "found": on_hand + 7}])
    );

    // Act: repair, then verify again.
    let (repaired, out) = verify(&app, Some("stock_items"), true).await;
    let (again, after) = verify(&app, Some("stock_items"), false).await;

    // Assert
    assert_eq!(repaired.exit_code(), 1, "it did differ: {out}");
    assert_eq!(repaired.reports[0].repaired, 3, "{out}");
    assert!(out.contains("repaired 3 rows in one transaction"), "{out}");
    assert_eq!(again.exit_code(), 0, "{after}");
    assert_eq!(app.snapshot("rm_stock_items").await, before);
}

#[tokio::test]
async fn live_writes_never_show_as_differences() {
    // Arrange: writers restocking as fast as they can while verify runs again and again.
    let app = Arc::new(spawn_app().await);
    for i in 0..20 {
        app.register_product(&format!("LIVE-{i:02}"), 1).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let sku = format!("LIVE-{:02}", (w * 5 + n) % 20);
                    let response = app
                        .post(
                            &format!("/api/v1/stock-items/{sku}/restock"),
                            &json!({"quantity": 1}),
                        )
                        .await;
                    assert_eq!(response.status(), 202);
                    n += 1;
                }
                n
            })
        })
        .collect();

    // Act
    let mut reports = Vec::new();
    for _ in 0..8 {
        let (verified, out) = verify(&app, Some("stock_items"), false).await;
        reports.push((verified, out));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let written: usize = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();

    // Assert: each run saw its own consistent moment, and the moments moved on.
    assert!(written > 50, "the writers wrote {written}");
    for (verified, out) in &reports {
        assert_eq!(verified.exit_code(), 0, "{out}");
    }
    let first = reports[0].0.reports[0].checkpoint;
    let last = reports[7].0.reports[0].checkpoint;
    assert!(last > first, "verify followed the live checkpoint");
}

#[tokio::test]
async fn an_event_held_in_dead_letters_is_not_a_difference() {
    // Arrange: a restock of an item that was never registered, which the stock projection
    // cannot apply (written around the bus).
    let app = spawn_app().await;
    app.register_product("REAL", 3).await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata) \
         VALUES ('stock_item', 'GHOST', 1, 'StockRestocked', '1.0', \
                 '{\"StockRestocked\":{\"quantity\":1,\"on_hand\":1}}', '{}')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    eventually("the ghost restock to be held", || async {
        let (_, letters) = app
            .get_json("/admin/dead-letters?subscription=stock_items")
            .await;
        (!letters.as_array()?.is_empty()).then_some(())
    })
    .await;

    // Act
    let (verified, out) = verify(&app, Some("stock_items"), false).await;

    // Assert
    assert_eq!(verified.exit_code(), 0, "{out}");
    assert_eq!(verified.reports[0].rows, 1, "{out}");
}

#[tokio::test]
async fn the_service_verifies_on_a_schedule_and_exports_the_differences() {
    // Arrange: a service that verifies every 100 ms, with one row edited behind its back.
    let app = spawn_app_with(|s| s.verify_interval = Some(Duration::from_millis(100))).await;
    app.register_product("DRIFT", 4).await;
    app.catch_up().await;
    sqlx::query("UPDATE rm_stock_items SET reserved = 3 WHERE id = 'DRIFT'")
        .execute(&app.pool)
        .await
        .unwrap();

    // Act + Assert: the schedule finds it, and /admin/projections says so.
    let last = eventually("a scheduled verify to find the drift", || async {
        let (_, list) = app.get_json("/admin/projections").await;
        let stock = list
            .as_array()?
            .iter()
            .find(|p| p["name"] == "stock_items")?
            .clone();
        (stock["last_verify"]["differences"] == 1).then_some(stock["last_verify"].clone())
    })
    .await;
    assert!(last["at"].is_string(), "{last}");
    // The gauge is the process's (tests share it), so read it right after a verify of ours.
    eventually("the differences gauge to read 1", || async {
        app.get_json("/admin/projections/stock_items/verify").await;
        let metrics = app.get("/metrics").await.text().await.ok()?;
        metrics
            .lines()
            .any(|l| l == "reserva_projection_verify_differences{projection=\"stock_items\"} 1")
            .then_some(())
    })
    .await;
    let (status, unknown) = app.get_json("/admin/projections/nope/verify").await;
    assert_eq!(
        (status, &unknown["code"]),
        (404, &Value::from("projection_not_found"))
    );
}
