//! `reserva seed`: demo stock through the command bus, idempotent.

use api::seed::{self, Progress, SeedPlan, SeedReport};
use chrono::NaiveDate;
use serde_json::Value;
use tests::{TestApp, spawn_app};

fn plan(products: u32, slots: u32) -> SeedPlan {
    SeedPlan {
        products,
        slots,
        first_day: NaiveDate::from_ymd_opt(2030, 3, 1).expect("a date"),
    }
}

/// Every item of `kind` the list endpoint shows once the read models have everything.
async fn listed(app: &TestApp, kind: &str) -> Vec<Value> {
    let head = app.catch_up().await;
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/stock-items?kind={kind}&per_page=100&min_position={head}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["has_more"], false);
    body["items"].as_array().expect("items").clone()
}

async fn demo_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rm_stock_items WHERE id LIKE 'DEMO-%'")
        .fetch_one(&app.pool)
        .await
        .expect("count the read model")
}

#[tokio::test]
async fn seeding_registers_products_and_time_slots_visible_over_http() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let report = seed::seed(&app.bus, &plan(12, 5), Progress::Hidden)
        .await
        .expect("seed");

    // Assert
    assert_eq!(
        report,
        SeedReport {
            products_registered: 12,
            products_existing: 0,
            slots_registered: 5,
            slots_existing: 0,
        }
    );
    let products = listed(&app, "product").await;
    let slots = listed(&app, "time_slot").await;
    assert_eq!(products.len(), 12);
    assert_eq!(slots.len(), 5);
    assert_eq!(demo_rows(&app).await, 17);
    assert_eq!(products[0]["sku"], "DEMO-P-001");
    assert_eq!(products[11]["sku"], "DEMO-P-012");
    for item in &products {
        let on_hand = item["on_hand"].as_u64().expect("on_hand");
        assert!((5..=50).contains(&on_hand), "{item}");
        assert!(item["low_stock_threshold"].as_u64().expect("threshold") >= 2);
        assert_eq!(item["unit_price"]["currency"], "MXN");
        assert_eq!(
            item["unit_price"]["amount"].as_i64().expect("amount") % 100,
            0
        );
    }
    // Slots are listed by start time: four a day from the plan's first day.
    let starts: Vec<&str> = slots
        .iter()
        .map(|s| s["starts_at"].as_str().expect("starts_at"))
        .collect();
    assert_eq!(starts[0], "2030-03-01T15:00:00Z");
    assert!(starts[4].starts_with("2030-03-02T"), "{starts:?}");
    for slot in &slots {
        let seats = slot["on_hand"].as_u64().expect("seats");
        assert!((8..=20).contains(&seats), "{slot}");
    }
    // Ordinary Register events, marked as the seed's.
    let events = app.events_for("stock_item", "DEMO-P-001").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "StockItemRegistered");
    assert_eq!(events[0].metadata["actor"], seed::ACTOR);
}

#[tokio::test]
async fn seeding_twice_writes_no_new_event_and_a_larger_run_adds_only_the_missing_items() {
    // Arrange
    let app = spawn_app().await;
    seed::seed(&app.bus, &plan(10, 4), Progress::Hidden)
        .await
        .expect("first seed");
    app.catch_up().await;
    let first = app.snapshot("rm_stock_items").await;
    let events = app.event_count().await;

    // Act
    let again = seed::seed(&app.bus, &plan(10, 4), Progress::Hidden)
        .await
        .expect("second seed");

    // Assert
    assert_eq!(
        again,
        SeedReport {
            products_registered: 0,
            products_existing: 10,
            slots_registered: 0,
            slots_existing: 4,
        }
    );
    assert_eq!(app.event_count().await, events, "a re-run wrote events");
    app.catch_up().await;
    assert_eq!(app.snapshot("rm_stock_items").await, first);

    // Act: more of each
    let more = seed::seed(&app.bus, &plan(13, 6), Progress::Hidden)
        .await
        .expect("larger seed");

    // Assert
    assert_eq!(
        more,
        SeedReport {
            products_registered: 3,
            products_existing: 10,
            slots_registered: 2,
            slots_existing: 4,
        }
    );
    assert_eq!(app.event_count().await, events + 5);
    assert_eq!(listed(&app, "product").await.len(), 13);
    assert_eq!(demo_rows(&app).await, 19);
}
