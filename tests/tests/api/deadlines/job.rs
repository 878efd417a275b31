//! The deadline job on a bare database: one run, two racing jobs, start, schedule, shutdown.

use super::{Bare, count_of, due_at, meta, place_order_due, seconds_from_now, wait_past};
use chrono::{DateTime, Utc};
use commands::CommandBus;
use commands::deadlines::{self, Expired};
use domain::order::{Order, OrderCommand};
use std::time::Duration;
use tests::eventually;

#[tokio::test]
async fn an_order_that_ended_before_its_deadline_is_not_expired() {
    // Arrange: one order cancelled in time, one whose deadline outlived its end (a lagging
    // saga, simulated by writing the deadline back by hand).
    let bare = Bare::new().await;
    let due = seconds_from_now(1);
    let cancelled = place_order_due(&bare.bus, "DL-CUP", due).await;
    let lagging = place_order_due(&bare.bus, "DL-CUP", due).await;
    for id in [&cancelled, &lagging] {
        let cancel = OrderCommand::Cancel {
            reason: "changed my mind".to_owned(),
            by: domain::order::Canceller::Customer,
        };
        bare.bus
            .execute::<Order>(id, cancel, &meta())
            .await
            .unwrap();
    }
    bare.catch_up().await;
    assert_eq!(due_at(bare.pool(), &cancelled).await, None);
    sqlx::query("UPDATE saga_instances SET due_at = now() WHERE id = $1::uuid")
        .bind(&lagging)
        .execute(bare.pool())
        .await
        .unwrap();

    // Act
    wait_past(due).await;
    let run = deadlines::run_once(&bare.bus, 100).await.unwrap();

    // Assert
    assert_eq!(
        run,
        Expired {
            skipped: 1,
            ..Expired::default()
        },
        "the lagging deadline was claimed and skipped"
    );
    for id in [&cancelled, &lagging] {
        assert_eq!(count_of(bare.pool(), "order", id, "OrderExpired").await, 0);
    }
}

#[tokio::test]
async fn one_run_clears_a_backlog_larger_than_its_batch_and_leaves_what_is_not_due() {
    // Arrange: 35 orders that fell due while no job ran, 5 due in an hour.
    let bare = Bare::new().await;
    let past = seconds_from_now(-5);
    for _ in 0..35 {
        place_order_due(&bare.bus, "DL-BACKLOG", past).await;
    }
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(place_order_due(&bare.bus, "DL-BACKLOG", seconds_from_now(3600)).await);
    }
    bare.catch_up().await;

    // Act: claims of 10 at a time.
    let run = deadlines::run_once(&bare.bus, 10).await.unwrap();

    // Assert
    assert_eq!(
        run,
        Expired {
            orders: 35,
            ..Expired::default()
        }
    );
    bare.catch_up().await;
    let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT id::text, claimed_until FROM saga_instances WHERE due_at IS NOT NULL ORDER BY 1",
    )
    .fetch_all(bare.pool())
    .await
    .unwrap();
    later.sort();
    assert_eq!(
        rows,
        later.into_iter().map(|id| (id, None)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn two_jobs_racing_over_the_same_due_orders_expire_each_exactly_once() {
    // Arrange: 50 due orders; two buses on one pool, as two processes would be.
    let bare = Bare::new().await;
    let past = seconds_from_now(-5);
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(place_order_due(&bare.bus, "DL-RACE", past).await);
    }
    bare.catch_up().await;
    let buses = [bare.bus.clone(), CommandBus::new(bare.pool().clone())];

    // Act: small claims, so the two interleave many times.
    let runs = futures::future::join_all(
        buses.map(|bus| tokio::spawn(async move { deadlines::run_once(&bus, 3).await.unwrap() })),
    )
    .await;

    // Assert: every order claimed by one of them, and expired once.
    let runs: Vec<Expired> = runs.into_iter().map(Result::unwrap).collect();
    assert_eq!(runs.iter().map(|r| r.orders).sum::<usize>(), 50, "{runs:?}");
    assert!(
        runs.iter().all(|r| (r.skipped, r.failed) == (0, 0)),
        "{runs:?}"
    );
    for id in &ids {
        assert_eq!(count_of(bare.pool(), "order", id, "OrderExpired").await, 1);
    }
    bare.catch_up().await;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_instances WHERE due_at IS NOT NULL")
            .fetch_one(bare.pool())
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_deadline_job_sweeps_on_start_runs_on_its_interval_and_stops_on_shutdown() {
    // Arrange: an order that fell due while no job ran.
    let bare = Bare::new().await;
    let pool = bare.pool();
    let missed = place_order_due(&bare.bus, "DL-JOB", Utc::now()).await;
    bare.catch_up().await;

    // Act + Assert: the sweep on start.
    let mut job = deadlines::start(bare.bus.clone(), Duration::from_millis(100))
        .await
        .unwrap();
    eventually("the sweep to expire the missed order", || async {
        (count_of(pool, "order", &missed, "OrderExpired").await == 1).then_some(())
    })
    .await;
    // A scheduled run, for an order that falls due after the start.
    let on_time = place_order_due(&bare.bus, "DL-JOB", seconds_from_now(1)).await;
    eventually("a scheduled run to expire the later order", || async {
        (count_of(pool, "order", &on_time, "OrderExpired").await == 1).then_some(())
    })
    .await;
    // Nothing runs after shutdown (the job ticks every second).
    job.shutdown().await.unwrap();
    let after = place_order_due(&bare.bus, "DL-JOB", Utc::now()).await;
    bare.catch_up().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count_of(pool, "order", &after, "OrderExpired").await, 0);
}
