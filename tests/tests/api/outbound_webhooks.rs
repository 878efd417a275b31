//! Outbound webhooks: endpoints registered over `/admin`, deliveries queued by the
//! `outbound_webhooks` subscription and sent by the dispatcher to real HTTP receivers on
//! loopback ([`FakeReceiver`]), signed, retried, parked, and listed with their attempts.

use api::integration::events;
use api::outbound::{WebhookSettings, outbox, signature};
use chrono::{DateTime, Utc};
use feed::backoff::Backoff;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tests::fake_receiver::{Answer, Received};
use tests::{FakeReceiver, TestApp, eventually, spawn_app_with, wait_until_caught_up};

use crate::openapi::{conforms, document, response_schema};

/// Retries in milliseconds; `timeout` bounds one attempt.
fn fast(max_attempts: u32, timeout: Duration) -> WebhookSettings {
    WebhookSettings {
        max_attempts,
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(40)),
        timeout,
        poll_interval: Duration::from_millis(50),
    }
}

async fn spawn_with_webhooks(settings: WebhookSettings) -> TestApp {
    spawn_app_with(|s| s.webhooks = Some(settings)).await
}

/// A registered endpoint as the API answered it.
struct Registered {
    id: String,
    secret: String,
    created_at: DateTime<Utc>,
    answer: Value,
}

async fn register(app: &TestApp, url: &str, event_types: &[&str]) -> Registered {
    let response = app
        .post(
            "/admin/webhook-endpoints",
            &json!({"url": url, "event_types": event_types}),
        )
        .await;
    assert_eq!(response.status(), 201, "register {url}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let answer: Value = response.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/admin/webhook-endpoints/{id}/deliveries")
    );
    Registered {
        secret: answer["secret"].as_str().unwrap().to_owned(),
        created_at: answer["created_at"].as_str().unwrap().parse().unwrap(),
        id,
        answer,
    }
}

async fn place_order(app: &TestApp, sku: &str) -> String {
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(), "items": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn order_completed(app: &TestApp, id: &str) {
    eventually(&format!("order {id} completed"), || async {
        let (code, body) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && body["status"] == "COMPLETED").then_some(())
    })
    .await;
}

/// The events an endpoint registered at `since` for `wanted` should get, in feed order, as
/// `(position, subject)`; computed with the product's own mapping from the stored events.
async fn expected(app: &TestApp, wanted: &[&str], since: DateTime<Utc>) -> Vec<(String, String)> {
    let mut conn = app.pool.acquire().await.unwrap();
    let stored = feed::read_after(&mut conn, feed::Checkpoint::START, &[], 100_000)
        .await
        .unwrap();
    stored
        .iter()
        .filter(|event| event.recorded_at >= since)
        .filter_map(|event| {
            let envelope = events::envelope(event, None).unwrap()?;
            wanted
                .contains(&envelope.subject)
                .then(|| (event.position().to_string(), envelope.subject.to_owned()))
        })
        .collect()
}

/// Waits until the outbox has queued everything stored and `receiver` accepted each of
/// `wanted`'s events; returns them in feed order.
async fn all_accepted(
    app: &TestApp,
    receiver: &FakeReceiver,
    wanted: &[&str],
    since: DateTime<Utc>,
) -> Vec<(String, String)> {
    eventually("every wanted event accepted", || async {
        wait_until_caught_up(&app.pool, outbox::NAME).await;
        let expected = expected(app, wanted, since).await;
        let accepted: BTreeSet<String> = receiver
            .received()
            .iter()
            .filter(|r| r.accepted())
            .map(|r| r.event_id.clone())
            .collect();
        let ids: BTreeSet<String> = expected.iter().map(|(id, _)| id.clone()).collect();
        (!expected.is_empty() && accepted == ids).then_some(expected)
    })
    .await
}

fn by_event(received: &[Received]) -> BTreeMap<String, Vec<&Received>> {
    let mut by: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for request in received {
        by.entry(request.event_id.clone())
            .or_default()
            .push(request);
    }
    by
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!(
            "/admin/webhook-endpoints/{endpoint}/deliveries?per_page=100"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Waits until `count` deliveries are queued for `endpoint`.
async fn all_queued(app: &TestApp, endpoint: &str, count: usize) {
    eventually(&format!("{count} deliveries queued"), || async {
        (deliveries(app, endpoint).await.len() == count).then_some(())
    })
    .await;
}

/// Waits until none of `endpoint`'s deliveries is pending (a receiver's 200 is recorded just
/// after it was answered); returns them.
async fn all_settled(app: &TestApp, endpoint: &str) -> Vec<Value> {
    eventually("every delivery settled", || async {
        let listed = deliveries(app, endpoint).await;
        listed
            .iter()
            .all(|d| d["status"] != "pending")
            .then_some(listed)
    })
    .await
}

fn delivery<'a>(deliveries: &'a [Value], event_id: &str) -> &'a Value {
    deliveries
        .iter()
        .find(|d| d["event_id"].as_i64() == event_id.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no delivery of event {event_id}"))
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, checked with the `hmac` crate directly
/// (not the product's own helper), fresh, and also accepted by the helper receivers may use.
fn assert_signed(request: &Received, secret: &str) {
    use hmac::{Hmac, Mac};
    let parts: BTreeMap<&str, &str> = request
        .signature
        .split(',')
        .filter_map(|part| part.split_once('='))
        .collect();
    let t: i64 = parts["t"].parse().expect("a unix timestamp");
    assert!((Utc::now().timestamp() - t).abs() < 300, "signed just now");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    assert_eq!(
        parts["v1"],
        hex::encode(mac.finalize().into_bytes()),
        "request {} ({}) is signed with the endpoint's secret",
        request.index,
        request.event_id
    );
    assert!(
        signature::verify(
            secret,
            &request.signature,
            &request.body,
            Utc::now().timestamp(),
            300
        )
        .is_ok(),
        "request {} ({}) is signed with the endpoint's secret: {}",
        request.index,
        request.event_id,
        request.signature
    );
    assert_ne!(
        signature::verify(
            "whsec_another",
            &request.signature,
            &request.body,
            Utc::now().timestamp(),
            300
        ),
        Ok(()),
        "another secret does not verify it"
    );
    assert_eq!(request.content_type, "application/json");
    let envelope: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    assert_eq!(envelope["position"].to_string(), request.event_id);
    assert_eq!(envelope["subject"], request.event_type.as_str());
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_then_succeeds_gets_each_event_exactly_once_signed() {
    // Arrange: retries after 100 ms, 200 ms, 400 ms at least (jitter only adds).
    let app = spawn_with_webhooks(WebhookSettings {
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(400)),
        ..fast(8, Duration::from_secs(10))
    })
    .await;
    let receiver = FakeReceiver::start().await;
    // The first refusal waits until every event is queued, so the retries have later
    // deliveries of the same endpoint due behind them.
    receiver.then_answer([Answer::Held(500), Answer::Status(500), Answer::Status(500)]);
    let wanted = [
        "order.created.v1",
        "payment.succeeded.v1",
        "order.confirmed.v1",
    ];
    let endpoint = register(&app, &receiver.url, &wanted).await;
    assert!(endpoint.secret.starts_with("whsec_") && endpoint.secret.len() >= 70);
    let doc = document(&app).await;
    let schema = response_schema(
        &doc,
        "post",
        "/admin/webhook-endpoints",
        "201",
        "application/json",
    );
    conforms(&doc, schema, &endpoint.answer, "$").unwrap();
    app.register_product("HOOK-MUG", 5).await;

    // Act
    let order = place_order(&app, "HOOK-MUG").await;
    order_completed(&app, &order).await;
    all_queued(&app, &endpoint.id, wanted.len()).await;
    receiver.release();
    let expected = all_accepted(&app, &receiver, &wanted, endpoint.created_at).await;

    // Assert: each event accepted exactly once, the first after three refusals.
    let subjects: Vec<&str> = expected.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(subjects, wanted, "one of each, in feed order");
    let received = receiver.received();
    let by = by_event(&received);
    assert_eq!(by.len(), expected.len(), "no other event was sent");
    for (i, (event_id, subject)) in expected.iter().enumerate() {
        let requests = &by[event_id];
        let accepted = requests.iter().filter(|r| r.accepted()).count();
        assert_eq!(accepted, 1, "{subject} accepted exactly once");
        let attempts: Vec<&str> = requests.iter().map(|r| r.attempt.as_str()).collect();
        if i == 0 {
            assert_eq!(
                attempts,
                ["1", "2", "3", "4"],
                "{subject}: three refusals, then 200"
            );
        } else {
            assert_eq!(attempts, ["1"], "{subject} was sent once");
        }
        for request in requests {
            assert_eq!(&request.event_type, subject);
            assert_signed(request, &endpoint.secret);
        }
    }
    // In order: nothing of a later event before an earlier one was accepted.
    let arrival: Vec<&str> = received.iter().map(|r| r.event_id.as_str()).collect();
    let mut in_feed_order: Vec<&str> = vec![expected[0].0.as_str(); 4];
    in_feed_order.extend(expected[1..].iter().map(|(id, _)| id.as_str()));
    assert_eq!(arrival, in_feed_order);

    // The deliveries endpoint shows every attempt, and matches its schema.
    let listed = all_settled(&app, &endpoint.id).await;
    assert_eq!(listed.len(), expected.len());
    let first = delivery(&listed, &expected[0].0);
    assert_eq!(first["status"], "delivered");
    let codes: Vec<i64> = first["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    assert!(
        first["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert!(first["attempts"][3]["error"].is_null());
    let started: Vec<DateTime<Utc>> = first["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempted_at"].as_str().unwrap().parse().unwrap())
        .collect();
    for (n, floor_ms) in [(1, 100), (2, 200), (3, 400)] {
        let waited = started[n] - started[n - 1];
        assert!(
            waited >= chrono::Duration::milliseconds(floor_ms),
            "retry {n} came {waited} after the attempt before it: back-off doubles from 100 ms"
        );
    }
    for (event_id, _) in &expected[1..] {
        let other = delivery(&listed, event_id);
        assert_eq!(other["status"], "delivered");
        assert_eq!(other["attempts"].as_array().unwrap().len(), 1);
    }
    let response = app
        .get(&format!(
            "/admin/webhook-endpoints/{}/deliveries",
            endpoint.id
        ))
        .await;
    let page: Value = response.json().await.unwrap();
    let schema = response_schema(
        &doc,
        "get",
        "/admin/webhook-endpoints/{id}/deliveries",
        "200",
        "application/json",
    );
    conforms(&doc, schema, &page, "$").unwrap();
}

#[tokio::test]
async fn a_hanging_receiver_delays_no_other_endpoint() {
    // Arrange: attempts may take a minute, far longer than the test waits.
    let app = spawn_with_webhooks(fast(8, Duration::from_secs(60))).await;
    let hanging = FakeReceiver::start().await;
    hanging.always(Answer::Hang);
    let healthy = FakeReceiver::start().await;
    let wanted = ["order.created.v1"];
    let stuck = register(&app, &hanging.url, &wanted).await;
    let fine = register(&app, &healthy.url, &wanted).await;
    app.register_product("HANG-MUG", 10).await;

    // Act
    for _ in 0..3 {
        place_order(&app, "HANG-MUG").await;
    }
    let expected = all_accepted(&app, &healthy, &wanted, fine.created_at).await;

    // Assert: the healthy endpoint got all three while the hanging one still holds its first.
    assert_eq!(expected.len(), 3);
    let held = hanging.received();
    assert_eq!(
        held.len(),
        1,
        "the hanging endpoint's queue waits behind its head"
    );
    assert_eq!(held[0].event_id, expected[0].0);
    assert_eq!(held[0].answered, None, "still unanswered");
    let healthy_requests = healthy.received();
    assert_eq!(healthy_requests.len(), 3, "each sent once");
    for request in &healthy_requests {
        assert_signed(request, &fine.secret);
    }
    let stuck_deliveries = deliveries(&app, &stuck.id).await;
    assert_eq!(stuck_deliveries.len(), 3, "all queued");
    assert!(
        stuck_deliveries
            .iter()
            .all(|d| d["status"] == "pending" && d["attempts"].as_array().unwrap().is_empty()),
        "nothing recorded for the hanging endpoint yet: {stuck_deliveries:?}"
    );
}

#[tokio::test]
async fn a_delivery_is_parked_as_dead_after_its_last_attempt_and_the_next_one_goes_on() {
    // Arrange
    let app = spawn_with_webhooks(fast(3, Duration::from_secs(10))).await;
    let receiver = FakeReceiver::start().await;
    receiver.then_answer([Answer::Held(500), Answer::Status(503), Answer::Status(500)]);
    let wanted = ["order.created.v1"];
    let endpoint = register(&app, &receiver.url, &wanted).await;
    app.register_product("DEAD-MUG", 10).await;

    // Act
    place_order(&app, "DEAD-MUG").await;
    place_order(&app, "DEAD-MUG").await;
    all_queued(&app, &endpoint.id, 2).await;
    receiver.release();
    let listed = eventually("the first dead, the second delivered", || async {
        let listed = deliveries(&app, &endpoint.id).await;
        let statuses: BTreeSet<String> = listed
            .iter()
            .map(|d| d["status"].as_str().unwrap().to_owned())
            .collect();
        (listed.len() == 2 && statuses == BTreeSet::from(["dead".into(), "delivered".into()]))
            .then_some(listed)
    })
    .await;

    // Assert
    let expected = expected(&app, &wanted, endpoint.created_at).await;
    let (first, second) = (&expected[0].0, &expected[1].0);
    let dead = delivery(&listed, first);
    assert_eq!(dead["status"], "dead", "the first ran out of attempts");
    assert_eq!(dead["attempts"].as_array().unwrap().len(), 3);
    assert!(dead["next_attempt_at"].is_null());
    assert!(dead["delivered_at"].is_null());
    let delivered = delivery(&listed, second);
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["attempts"].as_array().unwrap().len(), 1);
    let arrival: Vec<(String, Option<u16>)> = receiver
        .received()
        .iter()
        .map(|r| (r.event_id.clone(), r.answered))
        .collect();
    assert_eq!(
        arrival,
        [
            (first.clone(), Some(500)),
            (first.clone(), Some(503)),
            (first.clone(), Some(500)),
            (second.clone(), Some(200)),
        ],
        "three attempts and no more; the next event only after the first was parked"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("reserva_webhook_deliveries_dead_total"),
        "parked deliveries are counted"
    );
    assert!(
        metrics.contains("reserva_webhook_deliveries_pending"),
        "the queue is sampled"
    );
}

#[tokio::test]
async fn a_delivery_cut_short_by_a_crash_is_sent_again_with_the_same_event_id() {
    // Arrange: the receiver holds the first request open past the crash.
    let app = spawn_app_with(|s| {
        s.webhooks = Some(fast(8, Duration::from_secs(60)));
        s.sagas = false;
    })
    .await;
    let receiver = FakeReceiver::start().await;
    receiver.then_answer([Answer::Hang]);
    let wanted = ["order.created.v1"];
    let endpoint = register(&app, &receiver.url, &wanted).await;
    app.register_product("CRASH-MUG", 10).await;
    place_order(&app, "CRASH-MUG").await;
    eventually("the first attempt is in flight", || async {
        (receiver.received().len() == 1).then_some(())
    })
    .await;

    // Act: a crash while the receiver holds the request; another instance (standing by
    // with a pool of its own) takes over the dispatcher's lease.
    let restarted = app.another_instance(|_| {}).await;
    drop(app);
    let expected = all_accepted(&restarted, &receiver, &wanted, endpoint.created_at).await;

    // Assert: sent twice under one event id, accepted once; only the finished attempt counts.
    assert_eq!(expected.len(), 1);
    let received = receiver.received();
    assert_eq!(
        received.len(),
        2,
        "sent again after the crash, and only once more"
    );
    assert_eq!(received[0].event_id, received[1].event_id);
    assert_eq!(received[0].body, received[1].body, "the same bytes");
    assert_eq!(received[0].answered, None);
    assert!(received[1].accepted());
    for request in &received {
        assert_signed(request, &endpoint.secret);
    }
    let listed = all_settled(&restarted, &endpoint.id).await;
    let only = delivery(&listed, &expected[0].0);
    assert_eq!(only["status"], "delivered");
    assert_eq!(only["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_registrations_and_unknown_endpoints_are_problems() {
    // Arrange
    let app = tests::spawn_app().await;
    let cases = [
        (
            json!({"url": "ftp://example.com/hooks", "event_types": ["order.created.v1"]}),
            400,
            "validation_failed",
            "url",
        ),
        (
            json!({"url": "not a url", "event_types": ["order.created.v1"]}),
            400,
            "validation_failed",
            "url",
        ),
        (
            json!({"url": "https://example.com/hooks", "event_types": []}),
            400,
            "validation_failed",
            "event_types",
        ),
        (
            json!({"url": "https://example.com/hooks"}),
            400,
            "validation_failed",
            "event_types",
        ),
        (
            json!({"url": "https://example.com/hooks",
                   "event_types": ["order.created.v1", "order.shipped.v1"]}),
            422,
            "unknown_event_type",
            "event_types[1]",
        ),
    ];

    // Act + Assert
    for (body, status, code, field) in cases {
        let response = app.post("/admin/webhook-endpoints", &body).await;
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    let (status, problem) = app
        .get_json(&format!(
            "/admin/webhook-endpoints/{}/deliveries",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "webhook_endpoint_not_found");
    let (status, problem) = app
        .get_json("/admin/webhook-endpoints/not-a-uuid/deliveries")
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "id");
    let (status, problem) = app
        .get_json(&format!(
            "/admin/webhook-endpoints/{}/deliveries?per_page=0",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "per_page");
}

#[tokio::test]
async fn a_replayed_feed_queues_and_sends_nothing_twice() {
    // Arrange: two orders delivered.
    let app = spawn_app_with(|s| {
        s.webhooks = Some(fast(8, Duration::from_secs(10)));
        s.sagas = false;
    })
    .await;
    let receiver = FakeReceiver::start().await;
    let wanted = ["order.created.v1"];
    let endpoint = register(&app, &receiver.url, &wanted).await;
    app.register_product("REPLAY-MUG", 10).await;
    place_order(&app, "REPLAY-MUG").await;
    place_order(&app, "REPLAY-MUG").await;
    all_accepted(&app, &receiver, &wanted, endpoint.created_at).await;

    // Act: the outbox's checkpoint goes back to the start (as a replay after a lost commit
    // would); the next event makes its runner read everything again.
    sqlx::query("UPDATE subscriptions SET transaction_id = 0, global_position = 0 WHERE name = $1")
        .bind(outbox::NAME)
        .execute(&app.pool)
        .await
        .unwrap();
    place_order(&app, "REPLAY-MUG").await;
    let expected = all_accepted(&app, &receiver, &wanted, endpoint.created_at).await;

    // Assert
    assert_eq!(expected.len(), 3);
    assert_eq!(all_settled(&app, &endpoint.id).await.len(), 3);
    let received = receiver.received();
    assert_eq!(received.len(), 3, "each event sent once: {received:?}");
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE subscription = $1")
            .bind(outbox::NAME)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(parked, 0, "the replayed batch applied cleanly");
}
