//! Live views over server-sent events: every status change in order, resumable with
//! `Last-Event-ID`, for their owner only, across instances; a slow follower is dropped
//! without slowing anyone else.

use api::auth::Role;
use api::configuration::AuthSettings;
use feed::{FeedSignal, Tail};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{JWT_SECRET, TestApp, fresh_database, spawn_app, spawn_app_with};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: i64,
    event: String,
    data: Value,
}

/// A server-sent-events client over the real HTTP client.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn connect(app: &TestApp, path: &str, token: Option<&str>, last: Option<i64>) -> Self {
        let response = Self::request(app, path, token, last).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{path}"
        );
        assert!(response.headers().get("content-encoding").is_none());
        Self {
            response,
            buffer: String::new(),
        }
    }

    async fn request(
        app: &TestApp,
        path: &str,
        token: Option<&str>,
        last: Option<i64>,
    ) -> reqwest::Response {
        let mut request = app
            .client
            .get(format!("{}{path}", app.address))
            .header("accept", "text/event-stream")
            .header("accept-encoding", "gzip, br");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.send().await.expect("connect")
    }

    /// The next message (comments and the `retry` field skipped); `None` when the stream
    /// ended. Panics after 20 s without one.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut event = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).ok();
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return Some(Message { id, event, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("a message within 20 s")
                .expect("read the stream")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Messages until one whose `field` is `value` (included).
    async fn until(&mut self, field: &str, value: &str) -> Vec<Message> {
        let mut seen = Vec::new();
        while let Some(message) = self.next().await {
            let done = message.data[field] == value;
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("the stream ended before {field} = {value}: {seen:?}");
    }
}

fn statuses(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m.data["status"].as_str().unwrap_or_default())
        .collect()
}

async fn place_order(app: &TestApp, sku: &str) -> String {
    let placed = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": Uuid::new_v4(), "items": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(placed.status(), 202);
    placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

// Long on purpose: one order's life, watched, left, resumed.
#[tokio::test]
async fn a_client_sees_every_status_change_in_order_and_resumes_after_its_last_event_id() {
    // Arrange: an order whose flow runs while a client watches from the start.
    let app = spawn_app().await;
    app.register_product("LIVE-1", 10).await;
    let id = place_order(&app, "LIVE-1").await;
    let path = format!("/api/v1/orders/{id}/events");
    let mut first = Sse::connect(&app, &path, None, None).await;

    // Act 1
    let seen = first.until("status", "COMPLETED").await;

    // Assert 1: every change, once, in the order of the store.
    assert_eq!(
        statuses(&seen),
        ["STARTED", "STOCK_RESERVED", "PAYMENT_PENDING", "COMPLETED"]
    );
    assert!(seen.iter().all(|m| m.event == "order.status_changed"));
    let stored = app.events_for("order", &id).await;
    for message in &seen {
        let cause = stored
            .iter()
            .find(|e| e.global_position == Some(message.id))
            .unwrap_or_else(|| panic!("{message:?} names an event of the order"));
        assert_eq!(message.data["cause"], cause.event_type.as_str());
        assert_eq!(message.data["id"], id.as_str());
    }
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));

    // Act 2: a client that saw the first two reconnects; then the order is cancelled (refund).
    drop(first);
    let mut resumed = Sse::connect(&app, &path, None, Some(seen[1].id)).await;
    let replayed = resumed.until("status", "COMPLETED").await;
    let cancel = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.status(), 202);
    let after = resumed.next().await.expect("the cancel's change, live");

    // Assert 2: exactly what followed, then the new change.
    assert_eq!(replayed, seen[2..]);
    assert!(after.id > seen[3].id);
    assert!(
        ["CANCELLED", "REFUNDED"].contains(&after.data["status"].as_str().unwrap_or_default()),
        "{after:?}"
    );
}

#[tokio::test]
async fn only_the_owner_or_an_admin_may_watch_an_order_and_bad_requests_are_problems() {
    let app = spawn_app_with(|settings| {
        settings.auth = Some(AuthSettings::new(JWT_SECRET).expect("a long enough secret"));
        settings.sagas = false;
    })
    .await;
    let admin = app.token("ops", Role::Admin);
    let register = app
        .post_as(
            &admin,
            "/api/v1/stock-items",
            &json!({"sku": "LIVE-2", "name": "Mug", "kind": "product", "quantity": 5,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(register.status(), 202);
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);
    let placed = app
        .post_as(
            &alice_token,
            "/api/v1/orders",
            &json!({"customer_id": alice, "items": [{"sku": "LIVE-2", "quantity": 1}]}),
        )
        .await;
    let id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/orders/{id}/events");

    let mut own = Sse::connect(&app, &path, Some(&alice_token), None).await;
    let mut admins = Sse::connect(&app, &path, Some(&admin), None).await;
    let someone_else = Sse::request(&app, &path, Some(&bob_token), None).await;
    let unknown = Sse::request(
        &app,
        &format!("/api/v1/orders/{}/events", Uuid::new_v4()),
        Some(&admin),
        None,
    )
    .await;
    let bad_resume = Sse::request(&app, &path, Some(&alice_token), Some(-1)).await;
    let anonymous = Sse::request(&app, &path, None, None).await;

    assert_eq!(own.next().await.unwrap().data["status"], "STARTED");
    assert_eq!(admins.next().await.unwrap().data["status"], "STARTED");
    assert_eq!(someone_else.status(), 404, "like an unknown id");
    let someone_else: Value = someone_else.json().await.unwrap();
    assert_eq!(someone_else["code"], "order_not_found");
    assert_eq!(unknown.status(), 404);
    assert_eq!(bad_resume.status(), 400);
    let bad_resume: Value = bad_resume.json().await.unwrap();
    assert_eq!(bad_resume["code"], "invalid_last_event_id");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_stock_item_stream_starts_from_the_current_state_and_follows_every_change() {
    let app = spawn_app().await;
    app.register_product("LIVE-3", 10).await;
    let mut stream = Sse::connect(&app, "/api/v1/stock-items/LIVE-3/events", None, None).await;

    let current = stream.next().await.unwrap();
    let restock = app
        .post(
            "/api/v1/stock-items/LIVE-3/restock",
            &json!({"quantity": 5}),
        )
        .await;
    assert_eq!(restock.status(), 202);
    let restocked = stream.next().await.unwrap();
    place_order(&app, "LIVE-3").await;
    let mut later = Vec::new();
    while later
        .last()
        .is_none_or(|m: &Message| m.data["on_hand"] != 14)
    {
        later.push(stream.next().await.unwrap());
    }

    assert_eq!(current.event, "stock.updated");
    assert_eq!(
        (
            current.data["on_hand"].as_u64(),
            current.data["available"].as_u64()
        ),
        (Some(10), Some(10))
    );
    assert_eq!(restocked.data["on_hand"], 15);
    assert_eq!(restocked.data["cause"], "StockRestocked");
    // Reserved, then committed: one unit leaves for good.
    let available: Vec<u64> = later
        .iter()
        .map(|m| m.data["available"].as_u64().unwrap())
        .collect();
    assert_eq!(available, [14, 14], "{later:?}");
    assert_eq!(later[0].data["reserved"], 1);
    assert_eq!(later[1].data["reserved"], 0);
}

#[tokio::test]
async fn a_client_of_one_instance_sees_what_another_instance_commits() {
    let first = spawn_app().await;
    first.register_product("LIVE-4", 10).await;
    let second = first.another_instance(|_| {}).await;
    let mut stream = Sse::connect(&second, "/api/v1/stock-items/LIVE-4/events", None, None).await;
    assert_eq!(stream.next().await.unwrap().data["on_hand"], 10);

    let restock = first
        .post(
            "/api/v1/stock-items/LIVE-4/restock",
            &json!({"quantity": 3}),
        )
        .await;
    assert_eq!(restock.status(), 202);

    assert_eq!(stream.next().await.unwrap().data["on_hand"], 13);
}

#[tokio::test]
async fn two_hundred_clients_watching_while_orders_flow_all_see_every_change() {
    let app = spawn_app().await;
    app.register_product("LIVE-5", 100).await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(Sse::connect(&app, "/api/v1/stock-items/LIVE-5/events", None, None).await);
    }

    for _ in 0..10 {
        place_order(&app, "LIVE-5").await;
    }

    let stored_final = 90;
    let mut histories = Vec::new();
    for client in &mut clients {
        let mut seen = Vec::new();
        while seen
            .last()
            .is_none_or(|m: &Message| m.data["on_hand"] != stored_final || m.data["reserved"] != 0)
        {
            seen.push(client.next().await.expect("the stream stays open"));
        }
        histories.push(seen);
    }
    assert!(
        histories
            .iter()
            .all(|h| h.windows(2).all(|w| w[0].id < w[1].id))
    );
    let ids = |h: &Vec<Message>| h.iter().map(|m| m.id).collect::<Vec<_>>();
    assert!(
        histories.iter().all(|h| ids(h) == ids(&histories[0])),
        "every client saw the same changes"
    );
}

/// Appends a real `StockItemRegistered`-shaped event for `id` at `sequence`.
async fn append(pool: &sqlx::PgPool, id: &str, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata) \
         VALUES ('stock_item', $1, $2, 'StockRestocked', '1.0', '{}'::json, '{}'::json)",
    )
    .bind(id)
    .bind(sequence)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_follower_that_does_not_read_is_dropped_and_the_others_get_everything() {
    // Arrange: a tail with room for two waiting events per follower; two followers of one
    // aggregate, one of which never reads.
    let database = fresh_database(4).await;
    let pool = &database.pool;
    commands::MIGRATOR.run(pool).await.unwrap();
    let signal = FeedSignal::default();
    let stop = CancellationToken::new();
    let tail = Tail::start(pool.clone(), &signal, 2, stop.clone());
    let mut reader = tail.follow("stock_item", "SLOW-1").await.unwrap();
    let mut stalled = tail.follow("stock_item", "SLOW-1").await.unwrap();

    // Act: five events, one at a time, each read by the reader before the next.
    let mut read = Vec::new();
    for sequence in 1..=5 {
        append(pool, "SLOW-1", sequence).await;
        signal.bump("stock_item");
        let event = tokio::time::timeout(Duration::from_secs(10), reader.recv())
            .await
            .expect("the reader is not held up")
            .expect("the reader stays followed");
        read.push(event.sequence);
    }

    // Assert
    assert_eq!(read, [1, 2, 3, 4, 5]);
    let mut stalled_got = Vec::new();
    while let Some(event) = stalled.recv().await {
        stalled_got.push(event.sequence);
    }
    assert_eq!(stalled_got, [1, 2], "what fitted its queue, then the end");
    assert_eq!(tail.dropped(), 1);
    assert_eq!(tail.followers(), 1);
    stop.cancel();
}
