//! Rebuilds while readers and writers run, and what a rebuild keeps (indexes, primary keys).

use super::writer::Writer;
use super::{
    WRITERS, assert_rows_are_at_their_last_event, assert_stock_matches_the_write_side, progress,
    quantity, rebuild_over_http, register,
};
use domain::Sku;
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use futures::future::join_all;
use projections::catalog;
use projections::rebuild::{self, Phase, Progress};
use serde_json::Value;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tests::{TestApp, spawn_app_without_sagas};
use tokio::sync::watch;

/// Stock levels seeded for the query-during-rebuild test: `KNOWN` ends with this many.
const KNOWN_ON_HAND: i64 = 62;
const SEEDED_ITEMS: usize = 150;

fn seeded(i: usize) -> Sku {
    Sku::parse(&format!("R-{i:03}")).unwrap()
}

/// What the readers saw while rebuilds ran.
#[derive(Default)]
struct Reads {
    made: AtomicUsize,
    empty: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Reads {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Lists a page of stock and reads `KNOWN` until `stop`, recording anything unexpected.
async fn read_until(app: &TestApp, stop: &AtomicBool, reads: &Reads) {
    while !stop.load(Ordering::Relaxed) {
        let (status, page) = app.get_json("/api/v1/stock-items?per_page=100").await;
        reads.made.fetch_add(1, Ordering::Relaxed);
        let items = page["items"].as_array().map_or(0, Vec::len);
        if status != 200 {
            reads.fail(format!("list answered {status}: {page}"));
        } else if items == 0 {
            reads.empty.fetch_add(1, Ordering::Relaxed);
        } else if items != 100 || page["has_more"] != true {
            reads.fail(format!(
                "list had {items} items, has_more {}",
                page["has_more"]
            ));
        }
        let (status, item) = app.get_json("/api/v1/stock-items/KNOWN").await;
        reads.made.fetch_add(1, Ordering::Relaxed);
        if status != 200 || item["on_hand"] != KNOWN_ON_HAND {
            reads.fail(format!("KNOWN answered {status}: {item}"));
        }
    }
}

// Long on purpose: readers and a rebuild run side by side; the phases are observed in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_an_error_or_an_empty_table_while_stock_items_is_rebuilt() {
    // Arrange: 151 items and a few thousand restocks.
    let app = spawn_app_without_sagas().await;
    let writer = Writer::new(&app);
    let known = Sku::parse("KNOWN").unwrap();
    writer
        .run::<StockItem>("KNOWN", register(&known, StockKind::Product, 42, 0))
        .await;
    for i in 0..SEEDED_ITEMS {
        writer
            .run::<StockItem>(
                seeded(i).as_str(),
                register(&seeded(i), StockKind::Product, 10, 2),
            )
            .await;
    }
    let restock = |n| StockItemCommand::Restock {
        quantity: quantity(n),
    };
    let seeders = (0..WRITERS).map(|w| {
        let writer = writer.clone();
        tokio::spawn(async move {
            for i in 0..180 {
                let sku = seeded((w * 7 + i) % SEEDED_ITEMS);
                writer.run::<StockItem>(sku.as_str(), restock(1)).await;
            }
        })
    });
    join_all(seeders).await;
    for _ in 0..20 {
        writer.run::<StockItem>("KNOWN", restock(1)).await;
    }
    app.catch_up().await;
    let seeded_events = app.event_count().await;
    let stock = catalog::find("stock_items").unwrap();

    // Act: readers and a writer run while stock_items is rebuilt six times, alternately
    // over HTTP and directly.
    let stop = AtomicBool::new(false);
    let reads = Reads::default();
    let readers = join_all((0..4).map(|_| read_until(&app, &stop, &reads)));
    let churn = async {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let sku = seeded(i % SEEDED_ITEMS);
            writer.run::<StockItem>(sku.as_str(), restock(2)).await;
            i += 1;
        }
        i
    };
    let rebuilds = async {
        let mut during = 0;
        for _ in 0..3 {
            let before = reads.made.load(Ordering::Relaxed);
            let state = rebuild_over_http(&app, "stock_items").await;
            assert!(
                state["applied"].as_u64() >= state["total"].as_u64(),
                "{state}"
            );
            let report = rebuild::rebuild(&app.pool, stock, &progress())
                .await
                .expect("direct rebuild");
            assert!(report.events as i64 >= seeded_events, "{report:?}");
            during += reads.made.load(Ordering::Relaxed) - before;
        }
        stop.store(true, Ordering::Relaxed);
        during
    };
    let (_, churned, during) = tokio::join!(readers, churn, rebuilds);

    // Assert
    let made = reads.made.load(Ordering::Relaxed);
    println!("{made} reads in all, {during} while stock_items was being rebuilt");
    let failures = std::mem::take(&mut *reads.failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed reads, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(reads.empty.load(Ordering::Relaxed), 0, "empty lists");
    assert!(during > 0, "no read overlapped a rebuild");
    assert!(churned > 0);
    // Writes made during the rebuilds all reached the final table.
    app.catch_up().await;
    assert_stock_matches_the_write_side(&app).await;
    assert_rows_are_at_their_last_event(&app, stock).await;
}

/// Index and constraint names of every read-model table, sorted.
async fn index_names(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT tablename::text, indexname::text FROM pg_indexes \
         WHERE tablename LIKE 'rm\\_%' ORDER BY 1, 2",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rebuilds_keep_the_tables_indexes_under_their_own_names() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("IDX-1", 3).await;
    let before = index_names(&app).await;
    assert!(before.len() >= 12, "{before:?}");

    // Act: rebuild every projection twice.
    for _ in 0..2 {
        for projection in catalog::all() {
            let (progress, _) = watch::channel(Progress {
                phase: Phase::Preparing,
                applied: 0,
                total: 0,
            });
            rebuild::rebuild(&app.pool, projection, &progress)
                .await
                .unwrap();
        }
    }

    // Assert: the same indexes by the same names, the primary keys still primary keys.
    assert_eq!(index_names(&app).await, before);
    let primary_keys: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE contype = 'p' \
         AND conrelid::regclass::text LIKE 'rm\\_%' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        primary_keys,
        [
            "rm_bookings_pkey",
            "rm_orders_pkey",
            "rm_payments_pkey",
            "rm_stock_items_pkey"
        ]
    );
    let item: Value = app
        .get_at("/api/v1/stock-items/IDX-1", app.head().await)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item["on_hand"], 3);
}
