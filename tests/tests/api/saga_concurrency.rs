//! The order and booking sagas under contention: many customers race over HTTP for the last
//! units or seats, paying through the simulated gateway (amounts whose minor units end in 02
//! fail). Once every order or booking has ended, the event store itself must show no oversell,
//! every hold resolved exactly once, and the stock balanced.

use std::collections::{BTreeMap, HashMap, HashSet};

use domain::stock_item::StockItem;
use futures::future::join_all;
use serde_json::{Value, json};
use tests::{StoredEvent, TestApp, eventually, spawn_app};

/// How one kind of owner (orders or bookings) is placed and ends.
struct Flow {
    /// Where it is placed.
    path: &'static str,
    /// Its aggregate type in the store.
    aggregate: &'static str,
    /// Its end events, with the read-model status each leads to.
    ends: &'static [(&'static str, &'static str)],
}

const ORDERS: Flow = Flow {
    path: "/api/v1/orders",
    aggregate: "order",
    ends: &[
        ("OrderCompleted", "COMPLETED"),
        ("OrderStockFailed", "STOCK_FAILED"),
        ("OrderPaymentFailed", "PAYMENT_FAILED"),
        ("OrderCancelled", "CANCELLED"),
        ("OrderExpired", "EXPIRED"),
        ("OrderRefunded", "REFUNDED"),
    ],
};

const BOOKINGS: Flow = Flow {
    path: "/api/v1/bookings",
    aggregate: "booking",
    ends: &[
        ("BookingConfirmed", "CONFIRMED"),
        ("BookingSeatsUnavailable", "SEATS_UNAVAILABLE"),
        ("BookingPaymentFailed", "PAYMENT_FAILED"),
        ("BookingCancelled", "CANCELLED"),
        ("BookingExpired", "EXPIRED"),
        ("BookingRefunded", "REFUNDED"),
    ],
};

impl Flow {
    fn end_events(&self) -> Vec<String> {
        self.ends
            .iter()
            .map(|(event, _)| (*event).to_owned())
            .collect()
    }

    fn is_end(&self, event_type: &str) -> bool {
        self.ends.iter().any(|(event, _)| *event == event_type)
    }

    fn status_after(&self, end_event: &str) -> &'static str {
        self.ends
            .iter()
            .find(|(event, _)| *event == end_event)
            .map(|(_, status)| *status)
            .expect("an end event")
    }
}

/// Registers a stock item over HTTP; panics unless accepted.
async fn register(app: &TestApp, body: Value) {
    let response = app.post("/api/v1/stock-items", &body).await;
    assert_eq!(response.status(), 202, "register {body}");
}

/// A product of `quantity` units at `price` minor units of MXN.
async fn register_priced_product(app: &TestApp, sku: &str, quantity: u32, price: i64) {
    register(
        app,
        json!({"sku": sku, "name": format!("Item {sku}"), "kind": "product",
               "quantity": quantity, "low_stock_threshold": 1,
               "unit_price": {"amount": price, "currency": "MXN"}}),
    )
    .await;
}

/// A time slot of `seats` seats starting in a month.
async fn register_slot(app: &TestApp, sku: &str, seats: u32) {
    let starts_at = chrono::Utc::now() + chrono::Duration::days(30);
    register(
        app,
        json!({"sku": sku, "name": format!("Slot {sku}"), "kind": "time_slot",
               "quantity": seats, "starts_at": starts_at,
               "unit_price": {"amount": 25000, "currency": "MXN"}}),
    )
    .await;
}

/// One order body of one unit per SKU, listed in the order given.
fn order_of(skus: &[&str]) -> Value {
    let items: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "quantity": 1}))
        .collect();
    json!({"customer_id": uuid::Uuid::new_v4(), "items": items})
}

/// POSTs every body at once, one task per customer; every one must answer 202. Returns the
/// ids in the order of `bodies`.
async fn place_concurrently(app: &TestApp, flow: &Flow, bodies: Vec<Value>) -> Vec<String> {
    let url = format!("{}{}", app.address, flow.path);
    let requests = bodies.into_iter().map(|body| {
        let client = app.client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let response = client.post(url).json(&body).send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    });
    let answers: Vec<(u16, Value)> = join_all(requests)
        .await
        .into_iter()
        .map(|task| task.expect("customer task"))
        .collect();
    let refused: Vec<&(u16, Value)> = answers.iter().filter(|(code, _)| *code != 202).collect();
    assert!(
        refused.is_empty(),
        "{} of {} placements were not accepted: {refused:?}",
        refused.len(),
        answers.len()
    );
    answers
        .into_iter()
        .map(|(_, body)| body["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Ids among `ids` with no end event yet (one query on the store).
async fn not_ended(pool: &sqlx::PgPool, flow: &Flow, ids: &[String]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM unnest($2::text[]) AS id \
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = $1 \
                           AND e.aggregate_id = id AND e.event_type = ANY($3)) \
         ORDER BY id",
    )
    .bind(flow.aggregate)
    .bind(ids)
    .bind(flow.end_events())
    .fetch_all(pool)
    .await
    .expect("owners without an end event")
}

/// Waits (bounded, by polling the store) until every one of `ids` has an end event. On time
/// out, panics with the events and saga history of those still open.
async fn wait_until_all_end(app: &TestApp, flow: &'static Flow, ids: &[String]) {
    let pool = app.pool.clone();
    let wanted = ids.to_vec();
    let what = format!("all {} {}s to reach an end", ids.len(), flow.aggregate);
    let waited = tokio::spawn(async move {
        eventually(&what, || {
            let pool = pool.clone();
            let wanted = wanted.clone();
            async move {
                not_ended(&pool, flow, &wanted)
                    .await
                    .is_empty()
                    .then_some(())
            }
        })
        .await;
    })
    .await;
    if waited.is_ok() {
        return;
    }
    let open = not_ended(&app.pool, flow, ids).await;
    let mut report = format!(
        "{} of {} {}s never reached an end:\n",
        open.len(),
        ids.len(),
        flow.aggregate
    );
    let mut by_last: BTreeMap<String, usize> = BTreeMap::new();
    for id in &open {
        let events = app.events_for(flow.aggregate, id).await;
        let last = events.last().map_or("none", |e| e.event_type.as_str());
        *by_last.entry(last.to_owned()).or_default() += 1;
    }
    report.push_str(&format!("last event of each: {by_last:?}\n"));
    for id in open.iter().take(3) {
        let events: Vec<String> = app
            .events_for(flow.aggregate, id)
            .await
            .iter()
            .map(|e| format!("{}#{} {}", e.event_type, e.sequence, e.payload))
            .collect();
        let (code, saga) = app.get_json(&format!("/admin/sagas/{id}")).await;
        report.push_str(&format!(
            "{} {id}\n  events: {events:#?}\n  saga ({code}): {saga:#}\n",
            flow.aggregate
        ));
    }
    panic!("{report}");
}

/// Every owner's end events, grouped by end event; asserts each owner ended exactly once.
#[track_caller]
fn single_ends(
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
fn count(ends: &BTreeMap<String, HashSet<String>>, end_event: &str) -> usize {
    ends.get(end_event).map_or(0, HashSet::len)
}

/// One reservation as the stock item's events tell it.
#[derive(Debug, Default)]
struct Hold {
    /// The order or booking holding it.
    owner: String,
    quantity: i64,
    /// `ReservationCommitted` events for it.
    commits: u32,
    /// Reasons of its `ReservationReleased` events.
    releases: Vec<String>,
}

/// A stock item's events folded by hand.
#[derive(Debug, Default)]
struct Stock {
    registered: i64,
    on_hand: i64,
    /// Units held, by `StockReserved − ReservationReleased − ReservationCommitted`.
    reserved: i64,
    /// Units sold.
    committed: i64,
    commit_events: usize,
    holds: HashMap<String, Hold>,
}

impl Stock {
    fn resolved(&self) -> bool {
        self.holds
            .values()
            .all(|h| h.commits + h.releases.len() as u32 == 1)
    }
}

/// Folds one stock item's events in sequence order, asserting along the way that no more was
/// ever held than was on hand and that commits and releases only touch holds that exist.
#[track_caller]
fn fold_stock(sku: &str, events: &[StoredEvent]) -> Stock {
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
async fn stock_levels(app: &TestApp, sku: &str) -> (i64, i64, i64) {
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
async fn assert_read_model_agrees(
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
fn assert_only_completed_keep_holds(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_customers_ordering_the_last_ten_units_never_oversell() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("LAST-TEN", 10).await;
    let bodies = (0..200).map(|_| order_of(&["LAST-TEN"])).collect();

    // Act
    let ids = place_concurrently(&app, &ORDERS, bodies).await;
    wait_until_all_end(&app, &ORDERS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&ORDERS, &ids, &events);
    let completed = ends.get("OrderCompleted").cloned().unwrap_or_default();
    assert_eq!(completed.len(), 10, "{ends:?}");
    assert_eq!(count(&ends, "OrderStockFailed"), 190, "{ends:?}");
    let stock = fold_stock("LAST-TEN", &app.events_for("stock_item", "LAST-TEN").await);
    assert_eq!(stock.commit_events, 10, "never more than ten sales");
    assert_eq!(stock.committed, completed.len() as i64);
    assert_eq!(stock.reserved, 0, "nothing left held");
    assert_eq!(stock.on_hand + stock.committed, stock.registered);
    assert!(
        stock.resolved(),
        "a hold not resolved exactly once: {stock:?}"
    );
    assert_only_completed_keep_holds("LAST-TEN", &stock, &ids, &completed);
    let (on_hand, reserved, available) = stock_levels(&app, "LAST-TEN").await;
    assert_eq!((on_hand + stock.committed, reserved), (10, 0));
    assert_eq!((on_hand, available), (0, 0));
    assert_read_model_agrees(&app, &ORDERS, "rm_orders", &ids, &ends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bookings_for_a_twenty_seat_slot_never_overbook() {
    // Arrange
    let app = spawn_app().await;
    register_slot(&app, "SLOT-20", 20).await;
    let bodies = (0..50)
        .map(|_| json!({"customer_id": uuid::Uuid::new_v4(), "slot_sku": "SLOT-20", "guests": 1}))
        .collect();

    // Act
    let ids = place_concurrently(&app, &BOOKINGS, bodies).await;
    wait_until_all_end(&app, &BOOKINGS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&BOOKINGS, &ids, &events);
    let confirmed = ends.get("BookingConfirmed").cloned().unwrap_or_default();
    assert_eq!(confirmed.len(), 20, "{ends:?}");
    assert_eq!(count(&ends, "BookingSeatsUnavailable"), 30, "{ends:?}");
    let stock = fold_stock("SLOT-20", &app.events_for("stock_item", "SLOT-20").await);
    assert_eq!(stock.commit_events, 20, "never more than twenty seats sold");
    assert_eq!(stock.committed, 20);
    assert_eq!(stock.reserved, 0);
    assert_eq!(stock.on_hand + stock.committed, stock.registered);
    assert!(
        stock.resolved(),
        "a hold not resolved exactly once: {stock:?}"
    );
    assert_only_completed_keep_holds("SLOT-20", &stock, &ids, &confirmed);
    let (on_hand, reserved, available) = stock_levels(&app, "SLOT-20").await;
    assert_eq!((on_hand, reserved, available), (0, 0, 0));
    assert_read_model_agrees(&app, &BOOKINGS, "rm_bookings", &ids, &ends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_touching_two_skus_in_opposite_orders_all_end() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("PAIR-A", 15).await;
    app.register_product("PAIR-B", 15).await;
    let bodies = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                order_of(&["PAIR-A", "PAIR-B"])
            } else {
                order_of(&["PAIR-B", "PAIR-A"])
            }
        })
        .collect();

    // Act
    let ids = place_concurrently(&app, &ORDERS, bodies).await;
    wait_until_all_end(&app, &ORDERS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&ORDERS, &ids, &events);
    let completed = ends.get("OrderCompleted").cloned().unwrap_or_default();
    assert_eq!(completed.len(), 15, "{ends:?}");
    assert_eq!(count(&ends, "OrderStockFailed"), 25, "{ends:?}");
    for sku in ["PAIR-A", "PAIR-B"] {
        let stock = fold_stock(sku, &app.events_for("stock_item", sku).await);
        assert_eq!(stock.reserved, 0, "{sku}: nothing left held");
        assert!(
            stock.resolved(),
            "{sku}: a hold not resolved exactly once: {stock:?}"
        );
        assert_only_completed_keep_holds(sku, &stock, &ids, &completed);
        let mut sold: HashMap<&str, i64> = HashMap::new();
        for hold in stock.holds.values().filter(|h| h.commits == 1) {
            *sold.entry(hold.owner.as_str()).or_default() += hold.quantity;
        }
        assert_eq!(
            sold.len(),
            completed.len(),
            "{sku}: one sale per completed order"
        );
        assert!(
            sold.values().all(|units| *units == 1),
            "{sku}: each completed order bought exactly one unit: {sold:?}"
        );
        assert_eq!(stock.on_hand, 15 - completed.len() as i64, "{sku}");
        let (on_hand, reserved, _) = stock_levels(&app, sku).await;
        assert_eq!(
            (on_hand, reserved),
            (15 - completed.len() as i64, 0),
            "{sku}"
        );
    }
    assert_read_model_agrees(&app, &ORDERS, "rm_orders", &ids, &ends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_orders_whose_payments_all_fail_release_every_hold() {
    // Arrange: 1502 minor units end in 02, so the simulated gateway declines every payment.
    let app = spawn_app().await;
    register_priced_product(&app, "DECLINED", 10, 1502).await;
    let bodies = (0..30).map(|_| order_of(&["DECLINED"])).collect();

    // Act
    let ids = place_concurrently(&app, &ORDERS, bodies).await;
    wait_until_all_end(&app, &ORDERS, &ids).await;

    // Assert
    let events = app.all_events().await;
    let ends = single_ends(&ORDERS, &ids, &events);
    let payment_failed = count(&ends, "OrderPaymentFailed");
    let stock_failed = count(&ends, "OrderStockFailed");
    assert_eq!(payment_failed + stock_failed, 30, "{ends:?}");
    assert!(
        payment_failed >= 10,
        "the first ten holds reach payment: {ends:?}"
    );
    let stock = fold_stock("DECLINED", &app.events_for("stock_item", "DECLINED").await);
    assert_eq!(stock.commit_events, 0, "nothing sold");
    assert_eq!((stock.on_hand, stock.reserved), (10, 0));
    assert!(
        stock.resolved(),
        "a hold not resolved exactly once: {stock:?}"
    );
    assert_only_completed_keep_holds("DECLINED", &stock, &ids, &HashSet::new());
    assert_eq!(
        stock.holds.len(),
        payment_failed,
        "one hold per order that reached payment"
    );
    let reasons: HashSet<&str> = stock
        .holds
        .values()
        .flat_map(|h| h.releases.iter().map(String::as_str))
        .collect();
    assert_eq!(reasons, HashSet::from(["payment_failed"]));
    let (on_hand, reserved, available) = stock_levels(&app, "DECLINED").await;
    assert_eq!((on_hand, reserved, available), (10, 0, 10));
    assert_read_model_agrees(&app, &ORDERS, "rm_orders", &ids, &ends).await;
}
