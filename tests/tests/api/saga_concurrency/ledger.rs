//! The outcome read back from the store: end events, stock folded by hand, read models.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Flow;
use domain::stock_item::StockItem;
use tests::{StoredEvent, TestApp};

/// Every owner's end events, grouped by end event; asserts each owner ended exactly once.
#[track_caller]
pub(super) fn single_ends(
    flow: &Flow,
    ids: &[String],
    events: &[StoredEvent],
) -> BTreeMap<String, HashSet<String>> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut ends: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in events {
        if event.aggregate_type == flow.aggregate
            && wanted.contains(event.aggregate_id.as_str())
            && flow.is_end(&event.event_type)
        {
            ends.entry(event.aggregate_id.as_str())
                .or_default()
                .push(&event.event_type);
        }
    }
    let twice: Vec<_> = ends.iter().filter(|(_, e)| e.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{}s with more than one end event: {twice:?}",
        flow.aggregate
    );
    assert_eq!(ends.len(), ids.len(), "every {} ended", flow.aggregate);
    let mut grouped: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (id, end) in ends {
        grouped
            .entry(end[0].to_owned())
            .or_default()
            .insert(id.to_owned());
    }
    grouped
}

/// How many owners ended with `end_event`.
pub(super) fn count(ends: &BTreeMap<String, HashSet<String>>, end_event: &str) -> usize {
    ends.get(end_event).map_or(0, HashSet::len)
}

/// One reservation as the stock item's events tell it.
#[derive(Debug, Default)]
pub(super) struct Hold {
    /// The order or booking holding it.
    pub(super) owner: String,
    pub(super) quantity: i64,
    /// `ReservationCommitted` events for it.
    pub(super) commits: u32,
    /// Reasons of its `ReservationReleased` events.
    pub(super) releases: Vec<String>,
}

/// A stock item's events folded by hand.
#[derive(Debug, Default)]
pub(super) struct Stock {
    pub(super) registered: i64,
    pub(super) on_hand: i64,
    /// Units held, by `StockReserved − ReservationReleased − ReservationCommitted`.
    pub(super) reserved: i64,
    /// Units sold.
    pub(super) committed: i64,
    pub(super) commit_events: usize,
    pub(super) holds: HashMap<String, Hold>,
}

impl Stock {
    pub(super) fn resolved(&self) -> bool {
        self.holds
            .values()
            .all(|h| h.commits + h.releases.len() as u32 == 1)
    }
}

/// Folds one stock item's events in sequence order, asserting along the way that no more was
/// ever held than was on hand and that commits and releases only touch holds that exist.
#[track_caller]
pub(super) fn fold_stock(sku: &str, events: &[StoredEvent]) -> Stock {
    let mut stock = Stock::default();
    for (n, event) in events.iter().enumerate() {
        assert_eq!(
            event.sequence,
            n as i64 + 1,
            "{sku}: sequences have no gaps"
        );
        let body = &event.payload[&event.event_type];
        let reservation = || body["reservation_id"].as_str().expect("reservation_id");
        let quantity = || body["quantity"].as_i64().expect("quantity");
        match event.event_type.as_str() {
            "StockItemRegistered" => {
                stock.registered = body["on_hand"].as_i64().expect("on_hand");
                stock.on_hand = stock.registered;
            }
            "StockReserved" => {
                let previous = stock.holds.insert(
                    reservation().to_owned(),
                    Hold {
                        owner: body["owner"]["id"].as_str().expect("owner").to_owned(),
                        quantity: quantity(),
                        ..Hold::default()
                    },
                );
                assert!(previous.is_none(), "{sku}: {event:?} reserved twice");
                stock.reserved += quantity();
            }
            "ReservationCommitted" => {
                let hold = stock
                    .holds
                    .get_mut(reservation())
                    .unwrap_or_else(|| panic!("{sku}: {event:?} commits an unknown hold"));
                assert_eq!(hold.quantity, quantity(), "{sku}: {event:?}");
                hold.commits += 1;
                stock.reserved -= quantity();
                stock.on_hand -= quantity();
                stock.committed += quantity();
                stock.commit_events += 1;
                assert_eq!(
                    body["on_hand"].as_i64(),
                    Some(stock.on_hand),
                    "{sku}: {event:?}"
                );
            }
            "ReservationReleased" => {
                let hold = stock
                    .holds
                    .get_mut(reservation())
                    .unwrap_or_else(|| panic!("{sku}: {event:?} releases an unknown hold"));
                assert_eq!(hold.quantity, quantity(), "{sku}: {event:?}");
                hold.releases
                    .push(body["reason"].as_str().expect("reason").to_owned());
                stock.reserved -= quantity();
            }
            "LowStockReached" | "StockDepleted" => {}
            other => panic!("{sku}: unexpected {other} in this test: {event:?}"),
        }
        assert!(
            0 <= stock.reserved && stock.reserved <= stock.on_hand,
            "{sku}: after event #{} ({}) {} units are held of {} on hand",
            event.sequence,
            event.event_type,
            stock.reserved,
            stock.on_hand
        );
    }
    stock
}

/// `(on_hand, reserved, available)` from the read model after everything so far, and from the
/// aggregate itself; asserts the two agree.
pub(super) async fn stock_levels(app: &TestApp, sku: &str) -> (i64, i64, i64) {
    let (code, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/{sku}?min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!(code, 200, "{item}");
    let read = (
        item["on_hand"].as_i64().expect("on_hand"),
        item["reserved"].as_i64().expect("reserved"),
        item["available"].as_i64().expect("available"),
    );
    let aggregate = app.bus.load::<StockItem>(sku).await.expect("load the item");
    let written = (
        i64::from(aggregate.on_hand()),
        i64::from(aggregate.reserved()),
        i64::from(aggregate.available()),
    );
    assert_eq!(read, written, "{sku}: read model against aggregate");
    read
}

/// The read model's status counts among `ids` once every projection caught up; they must be
/// what the end events say.
pub(super) async fn assert_read_model_agrees(
    app: &TestApp,
    flow: &Flow,
    table: &str,
    ids: &[String],
    ends: &BTreeMap<String, HashSet<String>>,
) {
    app.catch_up().await;
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse().expect("a uuid")).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT status, count(*) FROM {table} WHERE id = ANY($1) GROUP BY status"
    ))
    .bind(&uuids)
    .fetch_all(&app.pool)
    .await
    .expect("status counts");
    let read: BTreeMap<String, i64> = rows.into_iter().collect();
    let expected: BTreeMap<String, i64> = ends
        .iter()
        .map(|(end, owners)| (flow.status_after(end).to_owned(), owners.len() as i64))
        .collect();
    assert_eq!(read, expected, "{table} against the end events");
}

/// Asserts every hold of `stock` belongs to one of `ids`, and that the holds of owners outside
/// `completed` were all released.
#[track_caller]
pub(super) fn assert_only_completed_keep_holds(
    sku: &str,
    stock: &Stock,
    ids: &[String],
    completed: &HashSet<String>,
) {
    let ours: HashSet<&str> = ids.iter().map(String::as_str).collect();
    for (reservation, hold) in &stock.holds {
        assert!(
            ours.contains(hold.owner.as_str()),
            "{sku}: hold {reservation} of a stranger: {hold:?}"
        );
        let kept = hold.commits == 1;
        assert_eq!(
            kept,
            completed.contains(&hold.owner),
            "{sku}: hold {reservation} {hold:?}: committed exactly when its owner completed"
        );
    }
}
