//! Several `reserva serve` processes on one database: the real binary, three of them, each
//! with its own pool, wake-ups and background work. Every subscription, saga and job holds a
//! lease in PostgreSQL, so they run once across the three; one process is killed (SIGKILL)
//! mid-run and the others take over; afterwards nothing is doubled, nothing is lost and every
//! read model equals the events.

use api::operate;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tests::{FakeStripe, ServeProcess, WEBHOOK_SECRET, eventually, fresh_database, spawn_app_with};
use uuid::Uuid;

const PRODUCTS: usize = 6;
const UNITS: u32 = 12;
const SEATS: u32 = 16;
const CLIENTS: usize = 12;

/// Places orders and bookings through the instances in turn until `stop`, skipping an
/// instance that does not answer; returns what was accepted as `(kind, id)`.
async fn client(
    n: usize,
    addresses: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> Vec<(&'static str, String)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let customer = Uuid::new_v4();
    let mut placed = Vec::new();
    let mut i = n;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let address = &addresses[i % addresses.len()];
        let (kind, body) = if i.is_multiple_of(3) {
            (
                "bookings",
                json!({"customer_id": customer, "slot_sku": "MULTI-SLOT", "guests": 1 + i % 2}),
            )
        } else {
            (
                "orders",
                json!({"customer_id": customer, "items": [
                    {"sku": format!("MULTI-{}", i % PRODUCTS), "quantity": 1 + i % 2}]}),
            )
        };
        let Ok(response) = http
            .post(format!("{address}/api/v1/{kind}"))
            .json(&body)
            .send()
            .await
        else {
            continue;
        };
        if response.status() == 202
            && let Ok(answer) = response.json::<Value>().await
            && let Some(id) = answer["id"].as_str()
        {
            placed.push((kind, id.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    placed
}

/// Stripe's side: each new intent is paid and its `payment_intent.succeeded` delivered,
/// signed, to a live instance (again after a refusal or a dead instance, as Stripe retries).
async fn pay_every_intent(fake: Arc<FakeStripe>, live: Arc<RwLock<Vec<String>>>) {
    let http = reqwest::Client::new();
    let mut paid = HashSet::new();
    let mut turn = 0;
    loop {
        for intent in fake.intents() {
            if intent.status == "canceled" || paid.contains(&intent.id) {
                continue;
            }
            let body = fake.succeed(&intent.id);
            loop {
                turn += 1;
                let address = {
                    let live = live.read().expect("addresses");
                    live[turn % live.len()].clone()
                };
                let signature =
                    stripe_webhook::Webhook::generate_test_header(&body, WEBHOOK_SECRET, None);
                let delivered = http
                    .post(format!("{address}/webhooks/stripe"))
                    .header("content-type", "application/json")
                    .header("stripe-signature", signature)
                    .body(body.clone())
                    .send()
                    .await;
                if delivered.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            paid.insert(intent.id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Aggregates with more than one event of `types` (a quoted SQL list).
async fn repeated(pool: &sqlx::PgPool, types: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM (SELECT aggregate_id FROM events \
         WHERE event_type IN ({types}) GROUP BY 1 HAVING count(*) > 1) d"
    );
    count(pool, &sql).await
}

/// `count(*)` of a query over the test database.
async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

// Long on purpose: one scenario across three processes, checked from the store at the end.
#[tokio::test]
async fn three_processes_share_the_work_and_one_killed_midway_loses_nothing() {
    // Arrange: one migrated database, three processes, a scarce catalogue.
    let database = fresh_database(8).await;
    commands::MIGRATOR
        .run(&database.pool)
        .await
        .expect("migrate");
    // Payments go to one (fake) Stripe that outlives every instance, as the real one does
    // (the simulated gateway keeps its intents in the memory of the process that made them).
    let fake = Arc::new(FakeStripe::start().await);
    let env = [
        ("RESERVA_STRIPE__SECRET_KEY", "sk_test_reserva"),
        ("RESERVA_STRIPE__API_BASE", fake.uri.as_str()),
    ];
    // The first process starts alone, so it holds every lease (each runner stores its
    // checkpoint row once it runs); the two others stand by until it dies.
    let mut instances = vec![ServeProcess::start(&database, "all", &env).await];
    // The projections, the two sagas and the outbound webhooks' outbox.
    let runners = projections::catalog::names().len() as i64 + 3;
    eventually("the first process runs every subscription", || async {
        let running = count(&database.pool, "SELECT count(*) FROM subscriptions").await;
        (running >= runners).then_some(())
    })
    .await;
    instances.push(ServeProcess::start(&database, "all", &env).await);
    instances.push(ServeProcess::start(&database, "all", &env).await);
    let http = reqwest::Client::new();
    let first = instances[0].address.clone();
    for p in 0..PRODUCTS {
        let response = http
            .post(format!("{first}/api/v1/stock-items"))
            .json(
                &json!({"sku": format!("MULTI-{p}"), "name": "Multi", "kind": "product",
                          "quantity": UNITS, "unit_price": {"amount": 1000, "currency": "MXN"}}),
            )
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), 202);
    }
    let response = http
        .post(format!("{first}/api/v1/stock-items"))
        .json(
            &json!({"sku": "MULTI-SLOT", "name": "Slot", "kind": "time_slot",
                      "quantity": SEATS, "starts_at": "2027-01-01T10:00:00Z",
                      "unit_price": {"amount": 2000, "currency": "MXN"}}),
        )
        .send()
        .await
        .expect("register the slot");
    assert_eq!(response.status(), 202);

    // Act: clients on all three; the first process, which runs every subscription, is killed
    // midway; the clients carry on against the other two, whose standbys must take over.
    let addresses = Arc::new(instances.iter().map(|i| i.address.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    // The customers pay: every intent succeeds, announced to whichever instance answers.
    let live = Arc::new(RwLock::new(
        instances.iter().map(|i| i.address.clone()).collect(),
    ));
    let stripe = tokio::spawn(pay_every_intent(Arc::clone(&fake), Arc::clone(&live)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(n, Arc::clone(&addresses), Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut killed = instances.remove(0);
    killed.kill().await;
    live.write().expect("addresses").remove(0);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    stop.store(true, Ordering::SeqCst);
    let mut placed = Vec::new();
    for client in clients {
        placed.extend(client.await.expect("client"));
    }
    assert!(placed.len() > 50, "only {} accepted", placed.len());

    // Assert: every order and booking reaches an end state (the survivors took over the
    // sagas of the killed one) …
    let pool = &database.pool;
    let accepted: Vec<Uuid> = placed
        .iter()
        .map(|(_, id)| Uuid::parse_str(id).expect("an id"))
        .collect();
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let open = count(
                pool,
                "SELECT count(*) FROM saga_instances WHERE state NOT IN \
                 ('completed', 'stock_failed', 'payment_failed', 'cancelled', 'expired', \
                  'refunded')",
            )
            .await;
            // One saga per order or booking in the store: that includes any the killed
            // process committed but could not answer, so the clients never counted.
            let sagas = count(pool, "SELECT count(*) FROM saga_instances").await;
            let owners = count(
                pool,
                "SELECT count(*) FROM events \
                 WHERE event_type IN ('OrderPlaced', 'BookingPlaced')",
            )
            .await;
            let known: i64 =
                sqlx::query_scalar("SELECT count(*) FROM saga_instances WHERE id = ANY($1)")
                    .bind(&accepted)
                    .fetch_one(pool)
                    .await
                    .expect("sagas of the accepted");
            if open == 0 && sagas == owners && known == accepted.len() as i64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if settled.is_err() {
        let states: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT saga_type, state, count(*) FROM saga_instances GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .expect("states");
        let checkpoints: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, global_position FROM subscriptions ORDER BY 1")
                .fetch_all(pool)
                .await
                .expect("checkpoints");
        panic!(
            "not every saga ended in 20 s ({} placed): {states:?}, checkpoints {checkpoints:?}",
            placed.len()
        );
    }
    stripe.abort();
    // … every projection caught up with the feed, and equal to the events (a doubled or lost
    // projection would show as a difference) …
    let survivor = &instances[0];
    let head = count(
        pool,
        "SELECT global_position FROM events ORDER BY transaction_id DESC, \
         global_position DESC LIMIT 1",
    )
    .await;
    for name in projections::catalog::names() {
        projections::wait::until_reached(pool, None, name, head, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{name} did not catch up: {e}"));
    }
    let mut out = Vec::new();
    let verified = operate::verify(pool, None, true, false, &mut out)
        .await
        .expect("verify");
    let out = String::from_utf8(out).expect("text");
    assert_eq!(verified.exit_code(), 0, "{out}");
    assert_eq!(count(pool, "SELECT count(*) FROM dead_letters").await, 0);
    // … no saga step was doubled: one reservation per order line, one payment per owner, and
    // at most one outcome per payment …
    let doubled = count(
        pool,
        "SELECT count(*) FROM (SELECT aggregate_id, payload::jsonb -> 'StockReserved' \
         ->> 'reservation_id' AS r FROM events WHERE event_type = 'StockReserved' \
         GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0, "a reservation was made twice");
    let payments = repeated(pool, "'OrderPaymentRequested', 'BookingPaymentRequested'").await;
    assert_eq!(payments, 0, "a payment was requested twice");
    let settled = repeated(pool, "'PaymentSucceeded', 'PaymentFailed'").await;
    assert_eq!(settled, 0, "a payment settled twice");
    // … and no unit or seat was sold twice: what was committed fits what there was.
    let mut committed: HashMap<String, i64> = HashMap::new();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, sum((payload::jsonb -> 'ReservationCommitted' ->> 'quantity')::bigint)::bigint \
         FROM events WHERE event_type = 'ReservationCommitted' GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("committed units");
    committed.extend(rows);
    for (sku, units) in &committed {
        let capacity = if sku == "MULTI-SLOT" { SEATS } else { UNITS };
        assert!(
            *units <= i64::from(capacity),
            "{sku}: {units} committed of {capacity}"
        );
    }
    assert!(
        !committed.is_empty(),
        "some orders or bookings completed across the kill"
    );
    // The survivors still answer.
    let ready = http
        .get(format!("{}/health/ready", survivor.address))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn an_api_instance_runs_no_background_work_and_a_workers_instance_serves_no_api() {
    // An api-only instance: commands are accepted, but nothing projects them.
    let api = spawn_app_with(|s| s.role = api::configuration::InstanceRole::Api).await;
    api.register_product("ROLE-1", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let subscriptions = count(&api.pool, "SELECT count(*) FROM subscriptions").await;
    assert_eq!(subscriptions, 0, "no subscription ran on an api instance");
    let (_, ready) = api.get_json("/health/ready").await;
    assert_eq!(ready["checks"]["instance"]["role"], "api");

    // A workers instance on the same database projects what the api instance accepted, and
    // answers probes, metrics and webhooks but not the API.
    let workers = api
        .another_instance(|s| s.role = api::configuration::InstanceRole::Workers)
        .await;
    eventually("the workers instance projects the item", || async {
        let n = count(
            &workers.pool,
            "SELECT count(*) FROM rm_stock_items WHERE id = 'ROLE-1'",
        )
        .await;
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(
        workers.get("/api/v1/stock-items/ROLE-1").await.status(),
        404
    );
    assert_eq!(workers.get("/openapi.json").await.status(), 404);
    assert_eq!(workers.get("/health/live").await.status(), 200);
    assert_eq!(workers.get("/metrics").await.status(), 200);
    let (_, ready) = workers.get_json("/health/ready").await;
    assert_eq!(ready["checks"]["instance"]["role"], "workers");
    assert_eq!(ready["checks"]["instance"]["rate_limits"], "off");
    assert_ne!(
        workers.post_stripe_webhook("{}").await.status(),
        404,
        "webhooks are served by a workers instance"
    );
    // The api instance reads what the workers instance projected.
    assert_eq!(api.get("/api/v1/stock-items/ROLE-1").await.status(), 200);
}
