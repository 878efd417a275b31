//! Rate limits shared across instances through Redis (`REDIS_URL`, else the server on
//! `127.0.0.1:6379`; the test skips with a line on stderr when none answers, and `.ci/run` makes
//! sure one does): two `reserva serve` processes together grant one budget, not two; and when
//! Redis goes away a request passes uncounted instead of failing.

use std::io::{Read, Write};
use std::time::Duration;
use tests::{ServeProcess, fresh_database};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Whether a Redis answers `PING` at [`redis_url`]'s host and port.
fn redis_answers() -> bool {
    let url = redis_url();
    let authority = url
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let Ok(mut stream) = std::net::TcpStream::connect(&authority) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

const BUDGET: u64 = 8;

async fn statuses(instances: &[ServeProcess], requests: usize) -> Vec<u16> {
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..requests {
        let address = &instances[i % instances.len()].address;
        let response = http
            .get(format!("{address}/api/v1/stock-items"))
            .send()
            .await
            .expect("an answer");
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn two_processes_with_redis_grant_one_budget_between_them() {
    if !redis_answers() {
        eprintln!(
            "SKIPPED two_processes_with_redis_grant_one_budget_between_them: no Redis answers at {}",
            redis_url()
        );
        return;
    }
    let database = fresh_database(4).await;
    commands::MIGRATOR
        .run(&database.pool)
        .await
        .expect("migrate");
    let prefix = format!("reserva-test:{}:", uuid::Uuid::new_v4().simple());
    let budget = BUDGET.to_string();
    let url = redis_url();
    let env = [
        ("RESERVA_RATE_LIMIT__ENABLED", "true"),
        ("RESERVA_RATE_LIMIT__PER_MINUTE", budget.as_str()),
        ("REDIS_URL", url.as_str()),
        ("RESERVA_RATE_LIMIT__REDIS_PREFIX", prefix.as_str()),
    ];
    let instances = [
        ServeProcess::start(&database, "api", &env).await,
        ServeProcess::start(&database, "all", &env).await,
    ];

    // Act: twice the budget, alternating between the two processes, from one client.
    let answered = statuses(&instances, 2 * BUDGET as usize).await;

    // Assert: one budget between them; each process alone would have granted all of it.
    let granted = answered.iter().filter(|s| **s == 200).count() as u64;
    let refused = answered.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(
        (granted, refused),
        (BUDGET, BUDGET),
        "answers in order: {answered:?}"
    );
    let ready: serde_json::Value = reqwest::get(format!("{}/health/ready", instances[0].address))
        .await
        .expect("ready")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["checks"]["instance"]["rate_limits"], "shared");
}

#[tokio::test]
async fn without_redis_answering_requests_pass_uncounted_instead_of_failing() {
    let database = fresh_database(4).await;
    commands::MIGRATOR
        .run(&database.pool)
        .await
        .expect("migrate");
    // A port where nothing listens: every count fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let env = [
        ("RESERVA_RATE_LIMIT__ENABLED", "true"),
        ("RESERVA_RATE_LIMIT__PER_MINUTE", "2"),
        ("REDIS_URL", url.as_str()),
    ];
    let instance = [ServeProcess::start(&database, "api", &env).await];
    let answered = statuses(&instance, 6).await;
    assert!(
        answered.iter().all(|s| *s == 200),
        "a limiter outage is not an API outage: {answered:?}"
    );
}
