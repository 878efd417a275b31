//! `GET /metrics` after a full order flow: the series dashboards and alerts are built on, with
//! the values the flow must have left.
//!
//! The recorder is the test process's, shared by every test running in parallel: counters are
//! checked as lower bounds or on labels only this flow produces. The database gauges (lag,
//! position, saga instances) are sampled from the scraped server's own database on each
//! scrape, so those are checked exactly.

use commands::{CommandBus, CommandMetadata};
use domain::Quantity;
use domain::stock_item::{StockItem, StockItemCommand};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tests::{TestApp, eventually, register_product_command, spawn_app};

/// One series of the text exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `name{label="value",...} value` lines (label values may hold `{`, `}` and `,`, and
/// escape `"` and `\` with a backslash), skipping comments.
fn parse(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let name_end = line.find(['{', ' ']).expect("a series name");
            let name = line[..name_end].to_owned();
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(inner) = rest.strip_prefix('{') {
                let mut chars = inner.char_indices();
                let (mut key, mut value, mut in_value) = (String::new(), String::new(), false);
                let mut end = 0;
                while let Some((i, c)) = chars.next() {
                    match (in_value, c) {
                        (false, '}') => {
                            end = i + 1;
                            break;
                        }
                        (false, '=' | ',') => {}
                        (false, '"') => in_value = true,
                        (false, c) => key.push(c),
                        (true, '\\') => {
                            let (_, escaped) = chars.next().expect("an escaped character");
                            value.push(if escaped == 'n' { '\n' } else { escaped });
                        }
                        (true, '"') => {
                            labels.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                            in_value = false;
                        }
                        (true, c) => value.push(c),
                    }
                }
                rest = &inner[end..];
            }
            let value = rest.trim().split(' ').next().expect("a value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the series `name` whose labels include all of `labels`, summed over the
/// series that match (`None` when none does).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

#[track_caller]
fn at_least(samples: &[Sample], name: &str, labels: &[(&str, &str)], min: f64) {
    let found = value(samples, name, labels);
    assert!(
        found.is_some_and(|v| v >= min),
        "{name}{labels:?} = {found:?}, expected at least {min}"
    );
}

async fn scrape(app: &TestApp) -> (String, Vec<Sample>) {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let samples = parse(&body);
    (body, samples)
}

#[test]
fn the_parser_reads_labels_with_braces_commas_and_escapes() {
    let samples = parse(
        "# TYPE x counter\n\
         x{route=\"/a/{id}\",q=\"a,b\",e=\"say \\\"hi\\\"\"} 3\n\
         y 1.5\n\
         z_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].labels["route"], "/a/{id}");
    assert_eq!(samples[0].labels["q"], "a,b");
    assert_eq!(samples[0].labels["e"], "say \"hi\"");
    assert_eq!(value(&samples, "x", &[("route", "/a/{id}")]), Some(3.0));
    assert_eq!(value(&samples, "y", &[]), Some(1.5));
    assert_eq!(value(&samples, "z_bucket", &[("le", "+Inf")]), Some(2.0));
}

// Long on purpose: one order flow, then every series it should have moved, checked against
// one scrape; split up, the series would be read from different moments.
#[tokio::test]
async fn a_scrape_after_an_order_flow_shows_commands_sagas_lag_and_webhooks() {
    // Arrange: one product whose stock crosses its low-stock threshold (1) with this order.
    let app = spawn_app().await;
    app.register_product("METRICS-1", 2).await;
    let again = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "METRICS-1", "name": "Again", "kind": "product", "quantity": 1,
                    "low_stock_threshold": 1, "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(again.status(), 409);
    let bad_signature = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("stripe-signature", "t=1,v1=deadbeef")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_signature.status(), 400);
    assert_eq!(app.get("/no/such/route").await.status(), 404);

    // Act: an order through the simulated gateway until it completes.
    let placed = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(),
                    "items": [{"sku": "METRICS-1", "quantity": 1}]}),
        )
        .await;
    assert_eq!(placed.status(), 202);
    let id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(&format!("order {id} completes"), || async {
        let (code, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        (code == 200 && order["status"] == "COMPLETED").then_some(())
    })
    .await;
    let last = app.catch_up().await;
    let names = projections::catalog::names();
    let (body, samples) = eventually("a scrape of this app caught up", || async {
        let (body, samples) = scrape(&app).await;
        let caught_up = names.iter().all(|name| {
            value(
                &samples,
                "reserva_subscription_lag_events",
                &[("subscription", name)],
            ) == Some(0.0)
        });
        let completed = value(
            &samples,
            "reserva_saga_instances",
            &[("saga", "order_saga"), ("state", "completed")],
        );
        (caught_up && completed == Some(1.0)).then_some((body, samples))
    })
    .await;

    // Assert: commands by aggregate, command and outcome; events appended.
    at_least(
        &samples,
        "reserva_commands_total",
        &[
            ("aggregate", "order"),
            ("command", "Place"),
            ("outcome", "ok"),
        ],
        1.0,
    );
    at_least(
        &samples,
        "reserva_commands_total",
        &[
            ("aggregate", "order"),
            ("command", "Complete"),
            ("outcome", "ok"),
        ],
        1.0,
    );
    at_least(
        &samples,
        "reserva_commands_total",
        &[
            ("aggregate", "stock_item"),
            ("command", "Register"),
            ("outcome", "rejected"),
        ],
        1.0,
    );
    at_least(
        &samples,
        "reserva_events_appended_total",
        &[("aggregate", "order")],
        4.0,
    );
    at_least(&samples, "reserva_low_stock_alerts_total", &[], 1.0);

    // Sagas: this database's instances by state (every state exported), and the duration.
    assert_eq!(
        value(
            &samples,
            "reserva_saga_instances",
            &[("saga", "booking_saga"), ("state", "completed")]
        ),
        Some(0.0)
    );
    at_least(
        &samples,
        "reserva_saga_duration_seconds_count",
        &[("saga", "order_saga"), ("outcome", "completed")],
        1.0,
    );
    at_least(
        &samples,
        "reserva_saga_duration_seconds_bucket",
        &[
            ("saga", "order_saga"),
            ("outcome", "completed"),
            ("le", "+Inf"),
        ],
        1.0,
    );
    at_least(
        &samples,
        "reserva_saga_steps_total",
        &[("saga", "order_saga")],
        1.0,
    );

    // Projections: each one's lag and position, and the sagas' subscriptions too.
    for name in &names {
        assert_eq!(
            value(
                &samples,
                "reserva_subscription_position",
                &[("subscription", name)]
            ),
            Some(last as f64),
            "{name}"
        );
        assert_eq!(
            value(
                &samples,
                "reserva_dead_letters_open",
                &[("subscription", name)]
            ),
            Some(0.0),
            "{name}"
        );
    }
    for saga in ["order_saga", "booking_saga"] {
        assert!(
            value(
                &samples,
                "reserva_subscription_lag_events",
                &[("subscription", saga)]
            )
            .is_some(),
            "{saga}"
        );
    }

    // Webhooks by type and outcome.
    at_least(
        &samples,
        "reserva_webhooks_total",
        &[("type", "payment_intent.succeeded"), ("outcome", "applied")],
        1.0,
    );
    at_least(
        &samples,
        "reserva_webhooks_total",
        &[("type", "unknown"), ("outcome", "invalid_signature")],
        1.0,
    );

    // Gateway calls and its breaker.
    at_least(
        &samples,
        "reserva_gateway_calls_total",
        &[("operation", "create_intent"), ("outcome", "ok")],
        1.0,
    );
    at_least(
        &samples,
        "reserva_gateway_call_duration_seconds_count",
        &[("operation", "create_intent"), ("outcome", "ok")],
        1.0,
    );
    assert!(
        value(
            &samples,
            "reserva_gateway_circuit_open",
            &[("gateway", "simulated")]
        )
        .is_some()
    );

    // HTTP by matched route (never the raw path), method and status, as a histogram.
    let place = [
        ("method", "POST"),
        ("route", "/api/v1/orders"),
        ("status", "202"),
    ];
    at_least(&samples, "reserva_http_requests_total", &place, 1.0);
    at_least(
        &samples,
        "reserva_http_request_duration_seconds_bucket",
        &[place[0], place[1], place[2], ("le", "+Inf")],
        1.0,
    );
    at_least(
        &samples,
        "reserva_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/api/v1/orders/{id}"),
            ("status", "200"),
        ],
        1.0,
    );
    at_least(
        &samples,
        "reserva_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
        1.0,
    );
    assert!(!body.contains(&id), "an order id leaked into a label");
}

#[tokio::test]
async fn an_append_conflict_is_counted_as_a_retry_and_the_command_still_succeeds() {
    // Arrange: instance A caches the item; instance B then appends behind its back, so A's next
    // command decides on a stale version, loses the append and must retry.
    let app = spawn_app().await;
    let (a, b) = (
        CommandBus::new(app.pool.clone()),
        CommandBus::new(app.pool.clone()),
    );
    let meta = CommandMetadata::system("test");
    a.execute::<StockItem>("RETRY-1", register_product_command("RETRY-1", 1, 0), &meta)
        .await
        .unwrap();
    let restock = || StockItemCommand::Restock {
        quantity: Quantity::new(2).unwrap(),
    };
    b.execute::<StockItem>("RETRY-1", restock(), &meta)
        .await
        .unwrap();

    // Act
    a.execute::<StockItem>("RETRY-1", restock(), &meta)
        .await
        .unwrap();

    // Assert: nothing lost, and the scrape shows the retry and both restocks.
    let item = app.bus.load::<StockItem>("RETRY-1").await.unwrap();
    assert_eq!(item.on_hand(), 5);
    let (_, samples) = scrape(&app).await;
    at_least(
        &samples,
        "reserva_command_retries_total",
        &[("aggregate", "stock_item")],
        1.0,
    );
    at_least(
        &samples,
        "reserva_commands_total",
        &[
            ("aggregate", "stock_item"),
            ("command", "Restock"),
            ("outcome", "ok"),
        ],
        2.0,
    );
}
