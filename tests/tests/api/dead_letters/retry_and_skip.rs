//! The operator's retry or skip drains a chain in order; headless chains and unknown letters.

use super::{NAME, POISONED, Scene, assert_poisoned};
use feed::dead_letters::{self, Action, Requested};
use std::sync::atomic::Ordering;
use tests::{fresh_database, wait_until_caught_up};

#[tokio::test]
async fn a_poisoned_event_is_parked_and_retried_in_order_with_the_events_behind_it() {
    // Arrange
    let scene = Scene::start().await;
    scene.poison().await;
    let parked = assert_poisoned(&scene).await;

    // Act: the cause is fixed, the operator asks for a retry.
    scene.broken.store(false, Ordering::SeqCst);
    let requested = dead_letters::request(scene.pool(), parked.id, Action::Retry)
        .await
        .unwrap();

    // Assert: the parked event, then those behind it, in order; all resolved.
    let Requested::Accepted(letter) = requested else {
        panic!("{requested:?}");
    };
    assert_eq!(letter.requested_action.as_deref(), Some("retry"));
    let letters = scene.wait_until_closed().await;
    assert!(
        letters.iter().all(|l| l.status == "resolved"),
        "{letters:?}"
    );
    assert_eq!(
        letters[0].attempts, 4,
        "three failed tries and the one that worked"
    );
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(scene.handled(POISONED).await, poisoned);

    // Assert: the aggregate flows again, and a closed letter cannot be asked for again.
    scene.restock(POISONED, 6).await;
    wait_until_caught_up(scene.pool(), NAME).await;
    assert_eq!(
        scene.handled(POISONED).await,
        scene.positions_of(POISONED).await
    );
    assert_eq!(scene.letters().await.len(), 4);
    let again = dead_letters::request(scene.pool(), parked.id, Action::Retry)
        .await
        .unwrap();
    assert!(
        matches!(&again, Requested::Closed(l) if l.status == "resolved"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_skipped_event_is_never_handled_and_the_events_behind_it_are_in_order() {
    // Arrange
    let scene = Scene::start().await;
    scene.poison().await;
    let parked = assert_poisoned(&scene).await;

    // Act: the poisoned event stays broken; the operator drops it.
    let requested = dead_letters::request(scene.pool(), parked.id, Action::Skip)
        .await
        .unwrap();

    // Assert
    assert!(
        matches!(&requested, Requested::Accepted(l) if l.requested_action.as_deref() == Some("skip")),
        "{requested:?}"
    );
    let letters = scene.wait_until_closed().await;
    let statuses: Vec<&str> = letters.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(statuses, ["skipped", "resolved", "resolved", "resolved"]);
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(scene.handled(POISONED).await, poisoned[1..]);
    let again = dead_letters::request(scene.pool(), parked.id, Action::Retry)
        .await
        .unwrap();
    assert!(
        matches!(&again, Requested::Closed(l) if l.status == "skipped"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_chain_left_headless_by_an_interrupted_drain_is_finished_without_a_new_request() {
    // Arrange: as if a skip had closed the head and the runner died before the rest.
    let scene = Scene::start().await;
    scene.poison().await;
    let parked = assert_poisoned(&scene).await;

    // Act
    sqlx::query("UPDATE dead_letters SET status = 'skipped' WHERE id = $1")
        .bind(parked.id)
        .execute(scene.pool())
        .await
        .unwrap();

    // Assert: the waiting events are handled in order and resolved, with nobody asking again.
    let letters = scene.wait_until_closed().await;
    let statuses: Vec<&str> = letters.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(statuses, ["skipped", "resolved", "resolved", "resolved"]);
    let poisoned = scene.positions_of(POISONED).await;
    assert_eq!(scene.handled(POISONED).await, poisoned[1..]);
}

#[tokio::test]
async fn a_request_for_an_unknown_dead_letter_is_not_found() {
    let database = fresh_database(2).await;
    commands::MIGRATOR.run(&database.pool).await.unwrap();

    let retry = dead_letters::request(&database.pool, 999_999, Action::Retry)
        .await
        .unwrap();
    let skip = dead_letters::request(&database.pool, 999_999, Action::Skip)
        .await
        .unwrap();

    assert_eq!(retry, Requested::NotFound);
    assert_eq!(skip, Requested::NotFound);
}
