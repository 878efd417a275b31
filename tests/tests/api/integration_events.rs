//! Integration events on NATS JetStream, against the NATS server on loopback (`NATS_URL`, else
//! `nats://127.0.0.1:4222`; each test skips with a line on stderr when none answers, and
//! `.ci/run` makes sure one does). Every test publishes under a prefix of its own, so its
//! streams are its own, and deletes them at the end.

use api::configuration::GatewaySettings;
use api::integration::events::{self, STREAMS};
use api::integration::{NatsSettings, publisher};
use async_nats::jetstream;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tests::{TestApp, eventually, spawn_app_with, wait_until_caught_up};
use tokio::net::{TcpListener, TcpStream};

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The JetStream of the loopback NATS, or `None` (after saying so) when none answers.
async fn loopback_jetstream(test: &str) -> Option<jetstream::Context> {
    let connected = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(nats_url())
        .await;
    match connected {
        Ok(client) => Some(jetstream::new(client)),
        Err(error) => {
            eprintln!(
                "SKIPPED {test}: no NATS server answers at {} ({error})",
                nats_url()
            );
            None
        }
    }
}

fn settings(url: String) -> NatsSettings {
    NatsSettings {
        url,
        prefix: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        replicas: 1,
    }
}

/// One published message.
#[derive(Debug)]
struct Published {
    subject: String,
    message_id: String,
    correlation_header: String,
    envelope: Value,
}

/// Every message in the test's three streams, by position.
async fn published(js: &jetstream::Context, nats: &NatsSettings) -> BTreeMap<i64, Vec<Published>> {
    let mut all: BTreeMap<i64, Vec<Published>> = BTreeMap::new();
    for (name, _) in STREAMS {
        let Ok(mut stream) = js.get_stream(nats.stream(name)).await else {
            continue;
        };
        let state = stream.info().await.expect("stream info").state.clone();
        for sequence in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let message = stream.get_raw_message(sequence).await.expect("a message");
            let envelope: Value = serde_json::from_slice(&message.payload).expect("JSON");
            let header = |name: &str| {
                message
                    .headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            let position = envelope["position"].as_i64().expect("a position");
            all.entry(position).or_default().push(Published {
                subject: message.subject.to_string(),
                message_id: header("Nats-Msg-Id"),
                correlation_header: header("Reserva-Correlation-Id"),
                envelope,
            });
        }
    }
    all
}

/// What should have been published: the subject of every stored event that maps to one.
async fn expected(app: &TestApp, nats: &NatsSettings) -> BTreeMap<i64, String> {
    let mut conn = app.pool.acquire().await.expect("connection");
    let stored = feed::read_after(&mut conn, feed::Checkpoint::START, &[], 100_000)
        .await
        .expect("read the feed");
    stored
        .iter()
        .filter_map(|event| {
            events::envelope(event, None)
                .expect("decodes")
                .map(|e| (event.position(), nats.subject(e.subject)))
        })
        .collect()
}

/// Asserts that every expected message is in the streams exactly once, under its subject and
/// with its position as message id; returns them.
async fn assert_published_once(
    app: &TestApp,
    js: &jetstream::Context,
    nats: &NatsSettings,
) -> BTreeMap<i64, Published> {
    // Sagas may still append (a commit after a completion): compare once both ends agree.
    let (expected, published) = eventually("every expected event published", || async {
        wait_until_caught_up(&app.pool, publisher::NAME).await;
        let expected = expected(app, nats).await;
        let published = published(js, nats).await;
        let positions: BTreeSet<_> = published.keys().copied().collect();
        (positions == expected.keys().copied().collect::<BTreeSet<_>>())
            .then_some((expected, published))
    })
    .await;
    published
        .into_iter()
        .map(|(position, mut copies)| {
            assert_eq!(copies.len(), 1, "position {position} published once");
            let message = copies.pop().expect("one");
            assert_eq!(
                message.subject, expected[&position],
                "subject of {position}"
            );
            assert_eq!(message.message_id, position.to_string(), "Nats-Msg-Id");
            (position, message)
        })
        .collect()
}

async fn delete_streams(js: &jetstream::Context, nats: &NatsSettings) {
    for (name, _) in STREAMS {
        let _ = js.delete_stream(nats.stream(name)).await;
    }
}

/// Places an order for one unit of `sku` under correlation id `correlation`. A `503` (the
/// store briefly unavailable, as right after a crash) is retried as its problem says.
async fn place_order(app: &TestApp, sku: &str, correlation: &str) -> String {
    eventually(&format!("an order for {sku} accepted"), || async {
        let response = app
            .client
            .post(format!("{}/api/v1/orders", app.address))
            .header("x-correlation-id", correlation)
            .json(&json!({"customer_id": uuid::Uuid::new_v4(),
                          "items": [{"sku": sku, "quantity": 1}]}))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body = response.json::<Value>().await.expect("JSON");
        if status == 503 {
            return None;
        }
        assert_eq!(status, 202, "place an order for {sku}: {body}");
        Some(body["id"].as_str().expect("an id").to_owned())
    })
    .await
}

async fn order_reaches(app: &TestApp, id: &str, status: &str) {
    eventually(&format!("order {id} {status}"), || async {
        let (code, body) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && body["status"] == status).then_some(())
    })
    .await;
}

/// A product whose price ends in 02 minor units: the simulated gateway declines it.
async fn register_declined_product(app: &TestApp, sku: &str) {
    let response = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": "Declined", "kind": "product", "quantity": 3,
                    "unit_price": {"amount": 1502, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
}

fn subjects_of<'a>(published: &'a BTreeMap<i64, Published>, id: &str) -> Vec<&'a str> {
    published
        .values()
        .filter(|m| {
            let data = &m.envelope["data"];
            data["order_id"] == id || data["payment_id"] == id
        })
        .map(|m| m.subject.as_str())
        .collect()
}

#[tokio::test]
async fn every_integration_event_of_an_order_flow_a_failed_payment_and_a_cancel_arrives_once() {
    let Some(js) = loopback_jetstream("integration events of a flow").await else {
        return;
    };
    let nats = settings(nats_url());
    let app = spawn_app_with(|s| {
        s.nats = Some(nats.clone());
        // Payments settle a moment after they are requested, so an order can be cancelled
        // while it holds its stock.
        s.gateway = GatewaySettings::Simulated {
            delay: Duration::from_millis(300),
        };
    })
    .await;
    app.register_product("NATS-OK", 2).await;
    register_declined_product(&app, "NATS-DECLINED").await;
    // For the order after the restart, with room to spare: `place_order` retries a 503, and
    // right after the crash a command can commit and still answer 503 (the restarted server
    // shares the pool with the dead one's connections), leaving two orders that must not
    // compete for one unit.
    app.register_product("NATS-AFTER", 5).await;

    let paid = place_order(&app, "NATS-OK", "corr-paid").await;
    let declined = place_order(&app, "NATS-DECLINED", "corr-declined").await;
    order_reaches(&app, &paid, "COMPLETED").await;
    order_reaches(&app, &declined, "PAYMENT_FAILED").await;
    let cancelled = place_order(&app, "NATS-OK", "corr-cancel").await;
    // Cancelled once it holds the last unit, so that the hold, its release and the sold-out
    // moment are all published.
    order_reaches(&app, &cancelled, "PAYMENT_PENDING").await;
    let response = app
        .post(
            &format!("/api/v1/orders/{cancelled}/cancel"),
            &json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(response.status(), 202, "cancel");
    order_reaches(&app, &cancelled, "CANCELLED").await;

    let published = assert_published_once(&app, &js, &nats).await;
    let prefixed = |s: &str| nats.subject(s);
    let paid_subjects = subjects_of(&published, &paid);
    for subject in [
        "order.created.v1",
        "payment.pending.v1",
        "payment.succeeded.v1",
        "order.confirmed.v1",
    ] {
        assert!(
            paid_subjects.contains(&prefixed(subject).as_str()),
            "{subject} for the paid order: {paid_subjects:?}"
        );
    }
    let declined_subjects = subjects_of(&published, &declined);
    for subject in ["payment.failed.v1", "order.failed.v1"] {
        assert!(
            declined_subjects.contains(&prefixed(subject).as_str()),
            "{subject} for the declined order: {declined_subjects:?}"
        );
    }
    assert!(subjects_of(&published, &cancelled).contains(&prefixed("order.cancelled.v1").as_str()));
    let count = |subject: &str| {
        published
            .values()
            .filter(|m| m.subject == prefixed(subject))
            .count()
    };
    assert_eq!(count("inventory.reserved.v1"), 3, "one hold per order");
    assert_eq!(count("inventory.released.v1"), 2, "declined and cancelled");
    assert_eq!(
        count("inventory.out-of-stock.v1"),
        1,
        "the cancelled order held the last unit"
    );
    // A payment's events name its order, and every message carries the request's correlation.
    let succeeded = published
        .values()
        .find(|m| m.subject == prefixed("payment.succeeded.v1"))
        .expect("a payment.succeeded.v1");
    assert_eq!(succeeded.envelope["data"]["order_id"], paid.as_str());
    assert_eq!(succeeded.envelope["correlation_id"], "corr-paid");
    assert_eq!(succeeded.correlation_header, "corr-paid");
    let failed = published
        .values()
        .find(|m| m.subject == prefixed("order.failed.v1"))
        .expect("an order.failed.v1");
    assert_eq!(failed.envelope["data"]["cause"], "payment_failed");
    assert_eq!(failed.envelope["correlation_id"], "corr-declined");

    // Restarted (a crash): the relay resumes at its checkpoint; what it publishes next arrives
    // once, and nothing published before appears again.
    let restarted = app.restart().await;
    let after = place_order(&restarted, "NATS-AFTER", "corr-after").await;
    order_reaches(&restarted, &after, "COMPLETED").await;
    let again = assert_published_once(&restarted, &js, &nats).await;
    assert!(again.len() > published.len());
    assert!(
        subjects_of(&again, &after).contains(&prefixed("order.confirmed.v1").as_str()),
        "the order placed after the restart is published"
    );
    delete_streams(&js, &nats).await;
}

/// Forwards connections on `listener` to the real NATS server (a NATS that comes back).
async fn forward(listener: TcpListener, upstream: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn a_relay_started_while_nats_is_down_publishes_everything_once_nats_is_back() {
    let Some(js) = loopback_jetstream("relay while NATS is down").await else {
        return;
    };
    // Arrange: a port where no NATS answers yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    };
    let nats = settings(format!("nats://127.0.0.1:{port}"));
    let app = spawn_app_with(|s| s.nats = Some(nats.clone())).await;
    app.register_product("DOWN-1", 5).await;
    let order = place_order(&app, "DOWN-1", "corr-down").await;
    order_reaches(&app, &order, "COMPLETED").await;

    // While NATS is away the relay stays behind, parks nothing, and the orders still complete.
    let end = tests::feed_end(&app.pool).await;
    let stored = tests::stored_checkpoint(&app.pool, publisher::NAME).await;
    assert!(
        stored < end,
        "nothing can be published yet: {stored} < {end}"
    );
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE subscription = $1")
            .bind(publisher::NAME)
            .fetch_one(&app.pool)
            .await
            .expect("count dead letters");
    assert_eq!(parked, 0, "a NATS outage parks nothing");

    // NATS comes back on that address: everything is published, once.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is still free");
    let upstream = nats_url()
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = tokio::spawn(forward(listener, upstream));
    let published = assert_published_once(&app, &js, &nats).await;
    assert!(subjects_of(&published, &order).contains(&nats.subject("order.confirmed.v1").as_str()));
    proxy.abort();
    delete_streams(&js, &nats).await;
}

#[tokio::test]
async fn a_batch_published_but_not_committed_is_published_again_and_kept_once() {
    let Some(js) = loopback_jetstream("republish after a failed commit").await else {
        return;
    };
    let nats = settings(nats_url());
    let app = spawn_app_with(|s| s.nats = Some(nats.clone())).await;
    app.register_product("REPUB-1", 4).await;
    let first = place_order(&app, "REPUB-1", "corr-first").await;
    order_reaches(&app, &first, "COMPLETED").await;
    assert_published_once(&app, &js, &nats).await;
    // From here every event is an order flow's, each of which is published: the publisher's
    // next checkpoint moves fail after its batch was acknowledged by NATS,
    // as a crash between the two would (a serialization failure: the runner starts again
    // from its stored checkpoint and publishes the same events again).
    sqlx::raw_sql(
        // A sequence counts the tries: `nextval` is not rolled back with the failed batch.
        "CREATE SEQUENCE moves; \
         CREATE FUNCTION fail_first_moves() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF NEW.name = 'integration_events' AND NEW.global_position > 0 \
              AND nextval('moves') <= 3 THEN \
             RAISE EXCEPTION 'staged failure' USING ERRCODE = '40001'; \
           END IF; \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER fail_first_moves BEFORE UPDATE ON subscriptions \
         FOR EACH ROW EXECUTE FUNCTION fail_first_moves();",
    )
    .execute(&app.pool)
    .await
    .expect("stage the failures");
    let order = place_order(&app, "REPUB-1", "corr-republish").await;
    order_reaches(&app, &order, "COMPLETED").await;

    let published = assert_published_once(&app, &js, &nats).await;
    let tries: i64 = sqlx::query_scalar("SELECT last_value FROM moves")
        .fetch_one(&app.pool)
        .await
        .expect("count the tries");
    assert!(
        tries > 3,
        "three batches failed after publishing: {tries} tries"
    );
    assert!(subjects_of(&published, &order).contains(&nats.subject("order.confirmed.v1").as_str()));
    delete_streams(&js, &nats).await;
}
