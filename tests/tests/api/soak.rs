//! Soak: concurrent orders, bookings, cancels and restocks over many aggregates while the
//! service is stopped and started again and again — gracefully, as a crash (its background
//! work aborted mid-batch), and with its database connections killed under it — and then
//! every read model equals the events and no event is held in dead letters.

use api::operate;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tests::{TestApp, eventually, spawn_app};
use uuid::Uuid;

const PRODUCTS: usize = 24;
const SLOTS: usize = 6;
const CLIENTS: usize = 8;
/// How long the load runs between two interruptions.
const STRETCH: Duration = Duration::from_millis(1_500);

/// Where clients send their requests: the address of the server running now.
type Address = Arc<RwLock<String>>;

/// One client: a mix of commands against random aggregates until `stop`; answers from a
/// server going down are expected and ignored. Returns the commands accepted.
async fn client(n: usize, address: Address, stop: Arc<AtomicBool>) -> usize {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let customer = Uuid::new_v4();
    let mut accepted = 0;
    let mut placed: Vec<(&str, String)> = Vec::new();
    let mut i = n;
    while !stop.load(Ordering::SeqCst) {
        i = i.wrapping_mul(31).wrapping_add(7);
        let base = address.read().unwrap().clone();
        let (path, body) = match i % 5 {
            0 | 1 => (
                "/api/v1/orders".to_owned(),
                json!({"customer_id": customer, "items": [
                    {"sku": format!("SOAK-P-{:02}", i % PRODUCTS), "quantity": 1},
                    {"sku": format!("SOAK-P-{:02}", (i / 7) % PRODUCTS), "quantity": 2}]}),
            ),
            2 => (
                "/api/v1/bookings".to_owned(),
                json!({"customer_id": customer, "slot_sku": format!("SOAK-S-{:02}", i % SLOTS),
                       "guests": 1}),
            ),
            3 => (
                format!("/api/v1/stock-items/SOAK-P-{:02}/restock", i % PRODUCTS),
                json!({"quantity": 3}),
            ),
            _ => match placed.pop() {
                Some((kind, id)) => (format!("/api/v1/{kind}/{id}/cancel"), json!({})),
                None => continue,
            },
        };
        let Ok(response) = http.post(format!("{base}{path}")).json(&body).send().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if response.status() == 202 {
            accepted += 1;
            if let Ok(answer) = response.json::<Value>().await
                && let Some(id) = answer["id"].as_str()
                && i.is_multiple_of(3)
            {
                let kind = if path.ends_with("orders") {
                    "orders"
                } else {
                    "bookings"
                };
                if path.ends_with("orders") || path.ends_with("bookings") {
                    placed.push((kind, id.to_owned()));
                }
            }
        }
    }
    accepted
}

/// Kills every connection the service holds to its database, as a failover or a network cut
/// would; the service must reconnect and carry on.
async fn kill_connections(app: &TestApp) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND application_name LIKE 'reserva%'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn restarts_and_crashes_under_load_leave_every_read_model_equal_to_the_events() {
    // Arrange
    let mut app = spawn_app().await;
    for p in 0..PRODUCTS {
        app.register_product(&format!("SOAK-P-{p:02}"), 1_000).await;
    }
    for s in 0..SLOTS {
        let slot = app
            .post(
                "/api/v1/stock-items",
                &json!({"sku": format!("SOAK-S-{s:02}"), "name": "Slot", "kind": "time_slot",
                        "quantity": 500, "starts_at": "2031-01-01T10:00:00Z",
                        "unit_price": {"amount": 2000, "currency": "MXN"}}),
            )
            .await;
        assert_eq!(slot.status(), 202);
    }
    let address: Address = Arc::new(RwLock::new(app.address.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(n + 1, Arc::clone(&address), Arc::clone(&stop))))
        .collect();

    // Act: interruptions of every kind, with load in between.
    let interruptions = AtomicUsize::new(0);
    for round in 0..6 {
        tokio::time::sleep(STRETCH).await;
        app = match round % 3 {
            0 => app.restart_gracefully().await,
            1 => app.restart().await,
            _ => {
                kill_connections(&app).await;
                app
            }
        };
        *address.write().unwrap() = app.address.clone();
        interruptions.fetch_add(1, Ordering::SeqCst);
    }
    tokio::time::sleep(STRETCH).await;
    stop.store(true, Ordering::SeqCst);
    let accepted: usize = futures::future::join_all(clients)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();

    // Assert: the work went through the interruptions.
    assert!(accepted > 100, "only {accepted} commands were accepted");
    assert_eq!(interruptions.load(Ordering::SeqCst), 6);
    // The sagas finish what was in flight; then every projection catches up.
    eventually("the sagas to settle", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_orders WHERE status IN ('STARTED', 'STOCK_RESERVED')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (open == 0).then_some(())
    })
    .await;
    app.catch_up().await;
    let mut out = Vec::new();
    let verified = operate::verify(&app.pool, None, true, false, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(verified.exit_code(), 0, "{out}");
    for report in &verified.reports {
        assert!(report.is_clean(), "{out}");
    }
    let letters: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(letters, 0, "no event was held: {out}");
}
