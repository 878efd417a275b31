//! `audit as-of`: an aggregate's state at an earlier time or position, replayed from its events.

use super::{Store, commit, register, release, reserve, restock};
use chrono::{DateTime, Duration, Utc};
use commands::audit::history::{AsOf, StateAt, as_of, stream};
use domain::stock_item::StockItem;

/// `(on_hand, reserved, available)` of a stock item's state as `as_of` returns it.
fn counts(state: &StateAt) -> (u32, u32, u32) {
    let item: StockItem = serde_json::from_value(state.state.clone()).expect("a stock item");
    (item.on_hand(), item.reserved(), item.available())
}

async fn at(store: &Store, moment: AsOf) -> Option<StateAt> {
    as_of(&store.pool, "stock_item", "MUG-1", moment)
        .await
        .expect("as-of replays")
}

/// MUG-1 registered with 10, restocked by 5, 4 and 3 held, the 4 sold, the 3 released; another
/// item written between each step. Returns the counts expected after each MUG-1 event.
async fn history(store: &Store) -> Vec<(u32, u32, u32)> {
    let bus = &store.bus;
    register(bus, "MUG-1", 10).await;
    register(bus, "CUP-1", 1).await;
    restock(bus, "MUG-1", 5).await;
    restock(bus, "CUP-1", 1).await;
    let (sold, _) = reserve(bus, "MUG-1", 4).await;
    let (dropped, _) = reserve(bus, "MUG-1", 3).await;
    restock(bus, "CUP-1", 1).await;
    commit(bus, "MUG-1", sold).await;
    restock(bus, "CUP-1", 1).await;
    release(bus, "MUG-1", dropped).await;
    vec![
        (10, 0, 10),
        (15, 0, 15),
        (15, 4, 11),
        (15, 7, 8),
        (11, 3, 8),
        (11, 0, 11),
    ]
}

#[tokio::test]
async fn as_of_each_event_position_and_between_them_gives_the_state_after_the_last_event_by_then() {
    // Arrange
    let store = Store::bare().await;
    let expected = history(&store).await;
    let events = stream(&store.pool, "stock_item", "MUG-1", 100, 0)
        .await
        .unwrap();
    assert_eq!(events.len(), expected.len());

    for (i, event) in events.iter().enumerate() {
        // Act: at the event's own position, and just before the next MUG-1 event (positions
        // in between belong to CUP-1).
        let exact = at(&store, AsOf::Position(event.global_position)).await;
        let next = events.get(i + 1).map_or(i64::MAX, |e| e.global_position);
        let between = at(&store, AsOf::Position(next - 1)).await;

        // Assert
        for state in [exact, between] {
            let state = state.unwrap_or_else(|| panic!("a state at event {}", i + 1));
            assert_eq!(state.sequence, event.sequence);
            assert_eq!(state.global_position, event.global_position);
            assert_eq!(counts(&state), expected[i], "after event {}", i + 1);
        }
    }
    assert_eq!(
        at(&store, AsOf::Position(events[0].global_position - 1)).await,
        None,
        "nothing before the first event"
    );
}

#[tokio::test]
async fn as_of_a_time_gives_the_state_recorded_by_then_and_none_before_the_first_event() {
    // Arrange
    let store = Store::bare().await;
    let expected = history(&store).await;
    let events = stream(&store.pool, "stock_item", "MUG-1", 100, 0)
        .await
        .unwrap();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded_at).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "one transaction per event: {times:?}"
    );

    for (i, recorded_at) in times.iter().enumerate() {
        // Act: at the instant it was recorded (inclusive), and halfway to the next event.
        let exact = at(&store, AsOf::Time(*recorded_at)).await;
        let halfway = match times.get(i + 1) {
            Some(next) => *recorded_at + (*next - *recorded_at) / 2,
            None => Utc::now() + Duration::days(1),
        };
        let later = at(&store, AsOf::Time(halfway)).await;

        // Assert
        for state in [exact, later] {
            let state = state.unwrap_or_else(|| panic!("a state at {recorded_at}"));
            assert_eq!(state.sequence, events[i].sequence);
            assert_eq!(state.recorded_at, Some(*recorded_at));
            assert_eq!(counts(&state), expected[i], "as of {recorded_at}");
        }
    }
    let before = times[0] - Duration::microseconds(1);
    assert_eq!(at(&store, AsOf::Time(before)).await, None);
    assert_eq!(
        as_of(&store.pool, "stock_item", "NEVER-1", AsOf::Time(Utc::now()))
            .await
            .unwrap(),
        None,
        "an aggregate that never existed"
    );
}
