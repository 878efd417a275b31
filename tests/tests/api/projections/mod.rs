//! Projections under load and under rebuild: thousands of concurrent events fold into exactly
//! the rows a rebuild from zero produces, readers never notice a rebuild, and only one rebuild
//! of a projection runs at a time.
//!
//! Shared here: the load's sizes, command builders, rebuild-over-HTTP helpers and the checks
//! of read-model rows against the write side.

use commands::CommandMetadata;
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use domain::{Currency, Money, Quantity, Sku};
use projections::read_model::Projection;
use projections::rebuild::{Phase, Progress};
use serde_json::{Value, json};
use std::time::Duration;
use tests::TestApp;
use tokio::sync::watch;

mod load;
mod rebuild;
mod refusals;
mod writer;

/// Concurrent writers in the load test.
const WRITERS: usize = 16;
/// Events the load test writes at least.
const TARGET_EVENTS: usize = 10_000;
const PRODUCTS: usize = 40;
const SLOTS: usize = 8;
/// Stock that no reservation of the load test can exhaust.
const PLENTY: u32 = 1_000_000;
/// Longest wait for an HTTP-started rebuild to reach a phase.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(30);

fn meta() -> CommandMetadata {
    CommandMetadata::system("test")
}

fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}

fn product(i: usize) -> Sku {
    Sku::parse(&format!("P-{i:02}")).unwrap()
}

fn slot(i: usize) -> Sku {
    Sku::parse(&format!("T-{i:02}")).unwrap()
}

fn quantity(n: u32) -> Quantity {
    Quantity::new(i64::from(n)).unwrap()
}

fn progress() -> watch::Sender<Progress> {
    watch::Sender::new(Progress {
        phase: Phase::Preparing,
        applied: 0,
        total: 0,
    })
}

fn register(sku: &Sku, kind: StockKind, on_hand: u32, threshold: u32) -> StockItemCommand {
    StockItemCommand::Register {
        sku: sku.clone(),
        name: format!("Item {sku}"),
        kind,
        quantity: on_hand,
        low_stock_threshold: threshold,
        unit_price: mxn(1500),
    }
}

/// The table's object id: a rebuild's swap changes it.
async fn table_oid(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar("SELECT $1::text::regclass::oid::int8")
        .bind(table)
        .fetch_one(&app.pool)
        .await
        .expect("table oid")
}

/// Asserts each row's `position` is its aggregate's last event and that every aggregate of
/// the type has exactly one row.
async fn assert_rows_are_at_their_last_event(app: &TestApp, projection: &dyn Projection) {
    let table = projection.table();
    let (rows, at_last, aggregates): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM {table}), \
                (SELECT count(*) FROM {table} t JOIN \
                   (SELECT aggregate_id, max(global_position) AS last FROM events \
                     WHERE aggregate_type = $1 GROUP BY aggregate_id) e \
                   ON e.aggregate_id = t.id::text AND e.last = t.position), \
                (SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1)"
    ))
    .bind(projection.aggregate_type())
    .fetch_one(&app.pool)
    .await
    .expect("row positions");
    assert!(rows > 0, "{table} is empty");
    assert_eq!(
        (rows, at_last),
        (aggregates, aggregates),
        "{table}: rows, rows at their aggregate's last event, aggregates"
    );
}

/// Asserts every stock row's counts and flags equal the aggregate's, loaded from the event
/// store.
async fn assert_stock_matches_the_write_side(app: &TestApp) {
    let rows: Vec<(String, i64, i64, i64, bool, bool)> = sqlx::query_as(
        "SELECT id, on_hand, reserved, available, low_stock, depleted FROM rm_stock_items \
         ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for (sku, on_hand, reserved, available, low_stock, depleted) in rows {
        let item = app.bus.load::<StockItem>(&sku).await.unwrap();
        let threshold = item.low_stock_threshold();
        let stored = (
            i64::from(item.on_hand()),
            i64::from(item.reserved()),
            i64::from(item.available()),
            // Threshold 0 means "never low", as the aggregate's low-stock event has it (this
            // check used to call an empty item with threshold 0 low).
            threshold > 0 && item.available() <= threshold,
            item.available() == 0,
        );
        assert_eq!(
            (on_hand, reserved, available, low_stock, depleted),
            stored,
            "stock row {sku} vs its aggregate"
        );
    }
}

/// This process's latest rebuild of `name` as `GET /admin/projections` shows it.
async fn rebuild_state(app: &TestApp, name: &str) -> Value {
    let (status, list) = app.get_json("/admin/projections").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("a list of projections")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))["rebuild"]
        .clone()
}

/// Polls `GET /admin/projections` until `name`'s rebuild is in `phase`; panics if it fails
/// (unless `phase` is `failed`) or takes longer than [`REBUILD_TIMEOUT`].
async fn wait_for_phase(app: &TestApp, name: &str, phase: &str) -> Value {
    let deadline = tokio::time::Instant::now() + REBUILD_TIMEOUT;
    loop {
        let state = rebuild_state(app, name).await;
        if state["phase"] == phase {
            return state;
        }
        assert_ne!(
            state["phase"], "failed",
            "rebuild of {name} failed: {state}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "rebuild of {name} never reached {phase}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn post_rebuild(app: &TestApp, name: &str) -> reqwest::Response {
    app.post(&format!("/admin/projections/{name}/rebuild"), &json!({}))
        .await
}

/// Starts a rebuild over HTTP and waits until it is done.
async fn rebuild_over_http(app: &TestApp, name: &str) -> Value {
    let response = post_rebuild(app, name).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["projection"], name);
    wait_for_phase(app, name, "done").await
}

/// A deadline no test reaches.
fn later() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::hours(1)
}
