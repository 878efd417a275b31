//! The database work of a warm restock, an order flow and a read, counted statement by
//! statement on a cluster that records every one (`pg_stat_statements`), against budgets
//! written here: the deterministic guard against regressions like the one where every
//! subscription woke, read the feed and stored its checkpoint for every command, wanted or not.
//!
//! A phase's count is everything the service ran on the test's database while it lasted,
//! background work included (the projections and sagas the operations cause), divided by its
//! operations. No poll adds to it: the service's subscriptions poll once an hour and its
//! deadline job too, so only the operations wake anything, and the test's own waiting runs as
//! another database user whose statements are not counted. One thing does vary with timing: a
//! runner that looks while another append is still in flight finds events held back and looks
//! again a few milliseconds later (one statement a look since a runner reads the feed before
//! opening its batch's transaction; six before). A restock has little in flight; an order flow
//! has the saga's, the webhook's and the projections' transactions overlapping. Counted on a
//! quiet machine: a restock 9.3–9.8, an order flow 82–85 (it was 12 and 110–146 while every
//! batch locked, read its checkpoint, read the feed and probed for held-back events in four
//! statements). The budgets leave room for a loaded machine; the regression they guard against
//! multiplied the count (a restock went from 12 to 49).

use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;
use tests::{TestApp, counting_server, eventually, spawn_app_on};

/// The role the test observes and waits as; its statements are left out of the counts.
const OBSERVER: &str = "budget_observer";

/// Statements per warm restock: the command (load from the bus cache, append) and the
/// `stock_items` projection's share of the batches it woke.
const RESTOCK_BUDGET: f64 = 12.0;
/// Statements per order flow from `POST` to `COMPLETED`: order, stock and payment commands,
/// the saga's steps, and the orders, payments and stock projections (82–85 quiet).
const ORDER_FLOW_BUDGET: f64 = 120.0;
/// Statements per `GET` of a stock item: the instance that runs the stock projection keeps
/// the row in memory (ADR 0008), so after the restocks dropped it one read misses (one
/// statement) and the other 49 hit. Without the cache it is one statement each.
const READ_BUDGET: f64 = 0.1;

const RESTOCKS: u32 = 50;
const ORDERS: u32 = 10;
const READS: u32 = 50;

/// Statement counts of the test's database, read (and waited on) as [`OBSERVER`].
struct Counts {
    pool: PgPool,
}

impl Counts {
    async fn on(app: &TestApp) -> Self {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&app.pool)
            .await
            .expect("pg_stat_statements is installed beside the server");
        sqlx::query(&format!(
            "DO $$ BEGIN CREATE ROLE {OBSERVER} LOGIN SUPERUSER; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .execute(&app.pool)
        .await
        .expect("create the observer role");
        let options = (*app.pool.connect_options()).clone().username(OBSERVER);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("connect as the observer");
        Self { pool }
    }

    async fn reset(&self) {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&self.pool)
            .await
            .expect("reset the counts");
    }

    /// Statements the service ran on this database since the reset, and the ten most
    /// frequent, for the failure message.
    async fn taken(&self) -> (i64, String) {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT query, calls FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user) \
             ORDER BY calls DESC",
        )
        .fetch_all(&self.pool)
        .await
        .expect("read the counts");
        let total = rows.iter().map(|(_, calls)| calls).sum();
        let top = rows
            .iter()
            .take(10)
            .map(|(query, calls)| {
                format!(
                    "{calls:6}  {}",
                    query.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        (total, top)
    }

    /// Asserts the phase's statements per operation against `budget`, and returns them.
    async fn within(&self, phase: &str, operations: u32, budget: f64) -> f64 {
        let (total, top) = self.taken().await;
        #[allow(clippy::cast_precision_loss)]
        let each = total as f64 / f64::from(operations);
        println!(
            "{phase}: {total} statements for {operations} = {each:.1} each (budget {budget})\n{top}"
        );
        assert!(
            each <= budget,
            "{phase}: {each:.1} statements each, over the budget of {budget}; most frequent:\n{top}"
        );
        each
    }
}

/// Waits until every projection has stored a checkpoint at the feed's last event, nudging
/// each (they poll once an hour, and a projection is not woken by types it does not follow).
async fn settle(app: &TestApp, counts: &Counts) {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events")
        .fetch_one(&counts.pool)
        .await
        .expect("the head");
    for name in projections::catalog::names() {
        app.bus.feed_signal().nudge(name);
        projections::wait::until_reached(&counts.pool, None, name, head, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("projection {name} did not catch up: {e}"));
    }
}

#[tokio::test]
async fn a_restock_an_order_flow_and_a_read_stay_within_their_statement_budgets() {
    // Arrange: a warm service (the product registered, restocked, read and ordered once).
    let app = spawn_app_on(counting_server().await, |settings| {
        settings.feed_poll_interval = Duration::from_secs(3600);
        settings.deadline_interval = Duration::from_secs(3600);
    })
    .await;
    let counts = Counts::on(&app).await;
    let register = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "BUDGET-1", "name": "Mug", "kind": "product", "quantity": 1000,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(register.status(), 202);
    let one = json!({"quantity": 1});
    let restock = || app.post("/api/v1/stock-items/BUDGET-1/restock", &one);
    assert_eq!(restock().await.status(), 202);
    place_orders(&app, &counts, 1).await;
    assert_eq!(app.get("/api/v1/stock-items/BUDGET-1").await.status(), 200);
    settle(&app, &counts).await;

    // Act + Assert: restocks.
    counts.reset().await;
    for _ in 0..RESTOCKS {
        assert_eq!(restock().await.status(), 202);
    }
    settle(&app, &counts).await;
    counts.within("restock", RESTOCKS, RESTOCK_BUDGET).await;

    // Reads.
    counts.reset().await;
    for _ in 0..READS {
        assert_eq!(app.get("/api/v1/stock-items/BUDGET-1").await.status(), 200);
    }
    counts.within("read", READS, READ_BUDGET).await;

    // Order flows.
    counts.reset().await;
    place_orders(&app, &counts, ORDERS).await;
    settle(&app, &counts).await;
    counts.within("order flow", ORDERS, ORDER_FLOW_BUDGET).await;
}

/// Places `n` orders of one `BUDGET-1` and waits until the sagas completed them all.
async fn place_orders(app: &TestApp, counts: &Counts, n: u32) {
    let before: i64 = completed(&counts.pool).await;
    for _ in 0..n {
        let placed = app
            .post(
                "/api/v1/orders",
                &json!({"customer_id": uuid::Uuid::new_v4(),
                        "items": [{"sku": "BUDGET-1", "quantity": 1}]}),
            )
            .await;
        assert_eq!(placed.status(), 202, "{:?}", placed.json::<Value>().await);
    }
    eventually("the orders complete", || async {
        (completed(&counts.pool).await == before + i64::from(n)).then_some(())
    })
    .await;
}

async fn completed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rm_orders WHERE status = 'COMPLETED'")
        .fetch_one(pool)
        .await
        .expect("count completed orders")
}
