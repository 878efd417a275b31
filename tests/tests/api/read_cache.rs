//! Rows kept in memory by the instance whose runners write them (ADR 0008): stock-item reads
//! under concurrent writes never go back in time and never miss their `min_position`; rows
//! rewritten from elsewhere (a repair, a rebuild) replace the kept ones; a standby never
//! serves a kept row, and takes the cache over with the lease; an order's view, kept with its
//! payment, follows its saga and a change of the payment alone.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tests::{TestApp, eventually, spawn_app};

use crate::webhooks::refund_event;

const SKUS: usize = 4;
const WRITERS: usize = 6;
const RESTOCKS_EACH: usize = 40;
const READERS: usize = 6;

/// `GET /api/v1/stock-items/{sku}` through `http`, optionally at `min_position`.
async fn read(http: &reqwest::Client, address: &str, sku: &str, at: Option<i64>) -> Value {
    let query = at.map_or(String::new(), |p| format!("?min_position={p}"));
    let response = http
        .get(format!("{address}/api/v1/stock-items/{sku}{query}"))
        .send()
        .await
        .expect("read");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 200, "read {sku} at {at:?}: {body}");
    body
}

/// `on_hand` of the row in the table itself.
async fn on_hand_in_table(app: &TestApp, sku: &str) -> i64 {
    sqlx::query_scalar("SELECT on_hand FROM rm_stock_items WHERE id = $1")
        .bind(sku)
        .fetch_one(&app.pool)
        .await
        .expect("the row")
}

/// Sets the row's `on_hand` behind the runner's back, as a bug or a hand edit would.
async fn corrupt(app: &TestApp, sku: &str, on_hand: i64) {
    sqlx::query("UPDATE rm_stock_items SET on_hand = $2 WHERE id = $1")
        .bind(sku)
        .bind(on_hand)
        .execute(&app.pool)
        .await
        .expect("corrupt the row");
}

/// Restocks `sku` by one and returns the command's position.
async fn restock(http: &reqwest::Client, address: &str, sku: &str) -> i64 {
    let response = http
        .post(format!("{address}/api/v1/stock-items/{sku}/restock"))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .expect("restock");
    assert_eq!(response.status(), 202, "restock {sku}");
    let accepted: Value = response.json().await.expect("accepted");
    accepted["position"].as_i64().expect("a position")
}

#[tokio::test]
async fn reads_under_concurrent_restocks_never_go_back_and_end_equal_to_the_table() {
    // Arrange: four items, read once so that their rows are kept.
    let app = spawn_app().await;
    let skus: Vec<String> = (0..SKUS).map(|n| format!("CACHED-{n}")).collect();
    for sku in &skus {
        app.register_product(sku, 0).await;
    }
    let registered = app.catch_up().await;
    for sku in &skus {
        read(&app.client, &app.address, sku, Some(registered)).await;
    }

    // Act: writers restock and read their own write back at its position; readers read
    // without a position, all at once.
    let address = Arc::new(app.address.clone());
    let skus = Arc::new(skus);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (address, skus) = (Arc::clone(&address), Arc::clone(&skus));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..RESTOCKS_EACH {
                    let sku = &skus[(w + i) % SKUS];
                    let position = restock(&http, &address, sku).await;
                    let row = read(&http, &address, sku, Some(position)).await;
                    let seen = row["position"].as_i64().expect("position");
                    assert!(
                        seen >= position,
                        "{sku} read at min_position {position} shows the row of {seen}"
                    );
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (address, skus, done) =
                (Arc::clone(&address), Arc::clone(&skus), Arc::clone(&done));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut last: HashMap<String, (i64, i64)> = HashMap::new();
                let mut reads = 0;
                let mut i = r;
                while !done.load(Ordering::SeqCst) {
                    i += 1;
                    let sku = &skus[i % SKUS];
                    let row = read(&http, &address, sku, None).await;
                    let now = (
                        row["position"].as_i64().expect("position"),
                        row["on_hand"].as_i64().expect("on_hand"),
                    );
                    if let Some(before) = last.get(sku) {
                        assert!(
                            now >= *before,
                            "{sku} went back from {before:?} to {now:?} (position, on_hand)"
                        );
                    }
                    last.insert(sku.clone(), now);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer");
    }
    done.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.expect("a reader");
    }
    assert!(reads > 0, "the readers read");

    // Assert: once the writes are projected, every read equals the table and the events.
    let last = app.catch_up().await;
    let each = (WRITERS * RESTOCKS_EACH / SKUS) as i64;
    for sku in skus.iter() {
        let table = on_hand_in_table(&app, sku).await;
        assert_eq!(table, each, "{sku} in the table");
        for _ in 0..2 {
            let row = read(&app.client, &app.address, sku, Some(last)).await;
            assert_eq!(row["on_hand"], table, "{sku} as read");
        }
    }
}

#[tokio::test]
async fn rows_rebuilt_or_repaired_from_another_process_replace_the_ones_kept_here() {
    // Arrange: a row corrupted in the table, then read, so that the corrupt row is kept.
    let app = spawn_app().await;
    app.register_product("CACHED-A", 5).await;
    app.register_product("CACHED-B", 5).await;
    let at = app.catch_up().await;
    corrupt(&app, "CACHED-A", 99).await;
    for _ in 0..2 {
        let row = read(&app.client, &app.address, "CACHED-A", Some(at)).await;
        assert_eq!(
            row["on_hand"], 99,
            "the table's row is what is read and kept"
        );
    }
    // The kept row is what is served now: a change to the table alone does not show.
    corrupt(&app, "CACHED-A", 98).await;
    let row = read(&app.client, &app.address, "CACHED-A", None).await;
    assert_eq!(row["on_hand"], 99, "served from memory");

    // Act: a rebuild from another process (its own pool, as `reserva rebuild` would run).
    let other = sqlx::PgPool::connect_with(app.pool.connect_options().as_ref().clone())
        .await
        .expect("another process's pool");
    api::operate::rebuild(&other, Some("stock_items"), false)
        .await
        .expect("rebuild");

    // Assert: the rebuilt row is served, here, without any write of this process.
    eventually("the rebuilt row is read", || async {
        let row = read(&app.client, &app.address, "CACHED-A", None).await;
        (row["on_hand"] == 5).then_some(())
    })
    .await;

    // The same for a repair from another process (`reserva projections verify --repair`).
    corrupt(&app, "CACHED-B", 66).await;
    for _ in 0..2 {
        let row = read(&app.client, &app.address, "CACHED-B", None).await;
        assert_eq!(
            row["on_hand"], 66,
            "the table's row is what is read and kept"
        );
    }
    let mut out = Vec::new();
    api::operate::verify(&other, Some("stock_items"), false, true, &mut out)
        .await
        .expect("repair");
    eventually("the repaired row is read", || async {
        let row = read(&app.client, &app.address, "CACHED-B", None).await;
        (row["on_hand"] == 5).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_standby_never_serves_a_kept_row_and_takes_the_cache_over_with_the_lease() {
    // Arrange: the first instance holds every lease; a second one stands by.
    let first = spawn_app().await;
    first.register_product("CACHED-S", 5).await;
    let at = first.catch_up().await;
    let second = first.another_instance(|_| {}).await;
    for _ in 0..2 {
        let row = read(&second.client, &second.address, "CACHED-S", Some(at)).await;
        assert_eq!(row["on_hand"], 5);
    }

    // Act + Assert: the holder writes; the standby reads the write at its position (a row
    // it had kept would be the old one).
    let position = restock(&first.client, &first.address, "CACHED-S").await;
    let row = read(&second.client, &second.address, "CACHED-S", Some(position)).await;
    assert_eq!(row["on_hand"], 6, "the standby reads the table");

    // The holder stops; the standby takes the lease and its writes show at once.
    first.shutdown_gracefully().await;
    let position = restock(&second.client, &second.address, "CACHED-S").await;
    let row = read(&second.client, &second.address, "CACHED-S", Some(position)).await;
    assert_eq!(row["on_hand"], 7);
    // It now serves what it keeps: a change to the table alone does not show …
    read(&second.client, &second.address, "CACHED-S", None).await;
    corrupt(&second, "CACHED-S", 70).await;
    let row = read(&second.client, &second.address, "CACHED-S", None).await;
    assert_eq!(row["on_hand"], 7, "served from memory after the takeover");
    // … until its own runner writes the row again (a restock's event names the new count).
    let position = restock(&second.client, &second.address, "CACHED-S").await;
    let row = read(&second.client, &second.address, "CACHED-S", Some(position)).await;
    assert_eq!(
        row["on_hand"], 8,
        "the runner's write replaced the kept row"
    );
}

#[tokio::test]
async fn an_order_read_follows_its_saga_and_a_change_of_its_payment_alone() {
    // Arrange: orders placed while readers poll them without a position, as storefronts do.
    let app = spawn_app().await;
    app.register_product("CACHED-O", 100).await;
    let address = Arc::new(app.address.clone());
    let mut ids = Vec::new();
    for _ in 0..8 {
        let placed = app
            .post(
                "/api/v1/orders",
                &json!({"customer_id": uuid::Uuid::new_v4(),
                        "items": [{"sku": "CACHED-O", "quantity": 2}]}),
            )
            .await;
        assert_eq!(placed.status(), 202);
        let body: Value = placed.json().await.expect("accepted");
        ids.push(body["id"].as_str().expect("an id").to_owned());
    }
    let ids = Arc::new(ids);
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (address, ids) = (Arc::clone(&address), Arc::clone(&ids));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut last: HashMap<String, i64> = HashMap::new();
                let mut completed = 0;
                for i in 0.. {
                    let id = &ids[(r + i) % ids.len()];
                    let order: Value = http
                        .get(format!("{address}/api/v1/orders/{id}"))
                        .send()
                        .await
                        .expect("read")
                        .json()
                        .await
                        .expect("an order");
                    let position = order["position"].as_i64().expect("position");
                    let before = last.insert(id.clone(), position).unwrap_or(0);
                    assert!(
                        position >= before,
                        "{id} went back from {before} to {position}"
                    );
                    if order["status"] == "COMPLETED" {
                        assert_eq!(order["payment"]["status"], "succeeded", "{order}");
                        completed += 1;
                    }
                    if completed >= 3 * ids.len() {
                        break;
                    }
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.expect("a reader");
    }

    // Act: a refund changes the payment of a completed order, and nothing of the order.
    let id = &ids[0];
    let at = app.catch_up().await;
    let before: Value = app
        .get_at(&format!("/api/v1/orders/{id}"), at)
        .await
        .json()
        .await
        .expect("the order");
    let again: Value = app.get_json(&format!("/api/v1/orders/{id}")).await.1;
    assert_eq!(again, before, "read twice, the second from memory");
    let payment_id = before["payment"]["id"].as_str().expect("a payment");
    let (_, payment) = app
        .get_json(&format!("/api/v1/payments/{payment_id}"))
        .await;
    let intent = payment["provider_intent_id"].as_str().expect("an intent");
    let refund = refund_event("evt_cached_refund", intent, 3000, 1000);
    let refunded = app.post_stripe_webhook(&refund).await;
    assert_eq!(refunded.status(), 200);

    // Assert: the order's view shows its payment's new state at the refund's position.
    let at = app.catch_up().await;
    let after: Value = app
        .get_at(&format!("/api/v1/orders/{id}"), at)
        .await
        .json()
        .await
        .expect("the order");
    assert_eq!(
        after["position"], before["position"],
        "the order itself did not change"
    );
    assert_ne!(
        after["payment"], before["payment"],
        "the payment's change shows: {after}"
    );
}
