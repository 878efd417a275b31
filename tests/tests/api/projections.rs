//! Projections under load and under rebuild: thousands of concurrent events fold into exactly
//! the rows a rebuild from zero produces, readers never notice a rebuild, and only one rebuild
//! of a projection runs at a time.

use commands::bus::Routed;
use commands::{CommandBus, CommandMetadata};
use domain::booking::{Booking, BookingCommand};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::payment::{Payment, PaymentCommand};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand, StockKind};
use domain::{
    BookingId, Currency, CustomerId, Money, OrderId, Owner, PaymentId, Quantity, ReservationId, Sku,
};
use futures::future::join_all;
use projections::catalog;
use projections::read_model::Projection;
use projections::rebuild::{self, Phase, Progress, RebuildError};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::{TestApp, spawn_app_without_sagas};
use tokio::sync::watch;
use uuid::Uuid;

/// Concurrent writers in the load test.
const WRITERS: usize = 16;
/// Events the load test writes at least.
const TARGET_EVENTS: usize = 10_000;
const PRODUCTS: usize = 40;
const SLOTS: usize = 8;
/// Stock that no reservation of the load test can exhaust.
const PLENTY: u32 = 1_000_000;
/// Longest wait for an HTTP-started rebuild to reach a phase.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(30);

fn meta() -> CommandMetadata {
    CommandMetadata::system("test")
}

fn mxn(amount: i64) -> Money {
    Money::new(amount, Currency::parse("MXN").unwrap()).unwrap()
}

fn product(i: usize) -> Sku {
    Sku::parse(&format!("P-{i:02}")).unwrap()
}

fn slot(i: usize) -> Sku {
    Sku::parse(&format!("T-{i:02}")).unwrap()
}

fn quantity(n: u32) -> Quantity {
    Quantity::new(i64::from(n)).unwrap()
}

fn progress() -> watch::Sender<Progress> {
    watch::Sender::new(Progress {
        phase: Phase::Preparing,
        applied: 0,
        total: 0,
    })
}

fn register(sku: &Sku, kind: StockKind, on_hand: u32, threshold: u32) -> StockItemCommand {
    StockItemCommand::Register {
        sku: sku.clone(),
        name: format!("Item {sku}"),
        kind,
        quantity: on_hand,
        low_stock_threshold: threshold,
        unit_price: mxn(1500),
    }
}

fn reserve(owner: Owner, sku: &Sku, n: u32) -> StockItemCommand {
    StockItemCommand::Reserve {
        reservation_id: ReservationId::for_owner(owner, sku),
        quantity: quantity(n),
        owner,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
    }
}

/// How every order, booking and payment a writer touched must end up in its read model:
/// status and payment id (orders, bookings) or status and owner id (payments).
#[derive(Default)]
struct Expected {
    orders: BTreeMap<Uuid, (String, Option<Uuid>)>,
    bookings: BTreeMap<Uuid, (String, Option<Uuid>)>,
    payments: BTreeMap<Uuid, (String, Uuid)>,
}

impl Expected {
    fn merge(mut self, other: Self) -> Self {
        self.orders.extend(other.orders);
        self.bookings.extend(other.bookings);
        self.payments.extend(other.payments);
        self
    }
}

/// Drives the server's own bus, counting the events it commits.
#[derive(Clone)]
struct Writer {
    bus: CommandBus,
    written: Arc<AtomicUsize>,
}

impl Writer {
    fn new(app: &TestApp) -> Self {
        Self {
            bus: app.bus.clone(),
            written: Arc::default(),
        }
    }

    async fn run<A>(&self, id: &str, command: A::Command)
    where
        A: Routed,
        A::Command: Clone + Send,
    {
        let committed = self
            .bus
            .execute::<A>(id, command, &meta())
            .await
            .unwrap_or_else(|e| panic!("{} {id}: {e}", A::TYPE));
        self.written.fetch_add(committed.events, Ordering::Relaxed);
    }

    async fn create_payment(&self, owner: Owner, amount: Money) -> PaymentId {
        let id = PaymentId::for_owner(owner);
        let create = PaymentCommand::Create {
            owner,
            amount,
            provider: "simulated".into(),
            provider_intent_id: format!("pi_{}", id.0.simple()),
            client_secret: Some(format!("pi_{}_secret", id.0.simple())),
        };
        self.run::<Payment>(&id.to_string(), create).await;
        id
    }

    /// Place → reserve each line → stock reserved → payment requested, then either paid
    /// (commit, complete) or failed (release, payment failed).
    async fn order(&self, customer: CustomerId, lines: &[(Sku, u32)], pays: bool) -> Expected {
        let id = OrderId::new_random();
        let key = id.to_string();
        let items = lines
            .iter()
            .map(|(sku, n)| OrderItem {
                sku: sku.clone(),
                quantity: quantity(*n),
                unit_price: mxn(1500),
            })
            .collect();
        let units: i64 = lines.iter().map(|(_, n)| i64::from(*n)).sum();
        let place = OrderCommand::Place {
            customer_id: customer,
            items,
            expires_at: later(),
        };
        self.run::<Order>(&key, place).await;
        let owner = Owner::Order(id);
        for (sku, n) in lines {
            self.run::<StockItem>(sku.as_str(), reserve(owner, sku, *n))
                .await;
        }
        self.run::<Order>(&key, OrderCommand::ConfirmStockReserved)
            .await;
        let payment = self.create_payment(owner, mxn(1500 * units)).await;
        let payment_key = payment.to_string();
        self.run::<Order>(
            &key,
            OrderCommand::RequestPayment {
                payment_id: payment,
            },
        )
        .await;
        let (order_status, payment_status) = if pays {
            let succeed = PaymentCommand::Succeed {
                provider_event_id: format!("evt_ok_{payment_key}"),
            };
            self.run::<Payment>(&payment_key, succeed).await;
            for (sku, _) in lines {
                let commit = StockItemCommand::CommitReservation {
                    reservation_id: ReservationId::for_owner(owner, sku),
                };
                self.run::<StockItem>(sku.as_str(), commit).await;
            }
            let complete = OrderCommand::Complete {
                payment_id: payment,
            };
            self.run::<Order>(&key, complete).await;
            ("COMPLETED", "succeeded")
        } else {
            let fail = PaymentCommand::Fail {
                provider_event_id: format!("evt_no_{payment_key}"),
                reason: "card_declined".into(),
            };
            self.run::<Payment>(&payment_key, fail).await;
            for (sku, _) in lines {
                let release = StockItemCommand::ReleaseReservation {
                    reservation_id: ReservationId::for_owner(owner, sku),
                    reason: ReleaseReason::PaymentFailed,
                };
                self.run::<StockItem>(sku.as_str(), release).await;
            }
            let fail = OrderCommand::FailPayment {
                reason: "card_declined".into(),
            };
            self.run::<Order>(&key, fail).await;
            ("PAYMENT_FAILED", "failed")
        };
        let mut out = Expected::default();
        out.orders
            .insert(id.0, (order_status.to_owned(), Some(payment.0)));
        out.payments
            .insert(payment.0, (payment_status.to_owned(), id.0));
        out
    }

    /// Place → hold seats → payment requested → paid → seats committed → confirmed.
    async fn booking(&self, customer: CustomerId, slot: &Sku, guests: u32) -> Expected {
        let id = BookingId::new_random();
        let key = id.to_string();
        let place = BookingCommand::Place {
            customer_id: customer,
            slot_sku: slot.clone(),
            guests: quantity(guests),
            unit_price: mxn(1500),
            expires_at: later(),
        };
        self.run::<Booking>(&key, place).await;
        let owner = Owner::Booking(id);
        self.run::<StockItem>(slot.as_str(), reserve(owner, slot, guests))
            .await;
        self.run::<Booking>(&key, BookingCommand::MarkSeatsHeld)
            .await;
        let payment = self
            .create_payment(owner, mxn(1500 * i64::from(guests)))
            .await;
        let payment_key = payment.to_string();
        self.run::<Booking>(
            &key,
            BookingCommand::RequestPayment {
                payment_id: payment,
            },
        )
        .await;
        let succeed = PaymentCommand::Succeed {
            provider_event_id: format!("evt_ok_{payment_key}"),
        };
        self.run::<Payment>(&payment_key, succeed).await;
        let commit = StockItemCommand::CommitReservation {
            reservation_id: ReservationId::for_owner(owner, slot),
        };
        self.run::<StockItem>(slot.as_str(), commit).await;
        self.run::<Booking>(
            &key,
            BookingCommand::Confirm {
                payment_id: payment,
            },
        )
        .await;
        let mut out = Expected::default();
        out.bookings
            .insert(id.0, ("CONFIRMED".to_owned(), Some(payment.0)));
        out.payments
            .insert(payment.0, ("succeeded".to_owned(), id.0));
        out
    }

    /// An order cancelled before anything was reserved, and a restock and a correction.
    async fn cancel_and_restock(&self, customer: CustomerId, sku: &Sku) -> Expected {
        let id = OrderId::new_random();
        let place = OrderCommand::Place {
            customer_id: customer,
            items: vec![OrderItem {
                sku: sku.clone(),
                quantity: quantity(1),
                unit_price: mxn(1500),
            }],
            expires_at: later(),
        };
        self.run::<Order>(&id.to_string(), place).await;
        let cancel = OrderCommand::Cancel {
            reason: "changed my mind".into(),
        };
        self.run::<Order>(&id.to_string(), cancel).await;
        let restock = StockItemCommand::Restock {
            quantity: quantity(5),
        };
        self.run::<StockItem>(sku.as_str(), restock).await;
        let adjust = StockItemCommand::Adjust {
            delta: -2,
            reason: "count".into(),
        };
        self.run::<StockItem>(sku.as_str(), adjust).await;
        let mut out = Expected::default();
        out.orders.insert(id.0, ("CANCELLED".to_owned(), None));
        out
    }

    /// Writer `w`'s mix of flows, until all writers together wrote [`TARGET_EVENTS`].
    async fn drive(self, w: usize) -> Expected {
        let mut out = Expected::default();
        let customer = CustomerId::new_random();
        let mut i = 0;
        while self.written.load(Ordering::Relaxed) < TARGET_EVENTS {
            // Offsets 0, 11 and 22 modulo 40 never collide: an order's SKUs are distinct.
            let lines: Vec<(Sku, u32)> = (0..1 + i % 3)
                .map(|j| {
                    let sku = product((w + i * 3 + j * 11) % PRODUCTS);
                    (sku, 1 + ((w + i + j) % 3) as u32)
                })
                .collect();
            let done = match i % 5 {
                0 | 1 => self.order(customer, &lines, true).await,
                2 => self.order(customer, &lines, false).await,
                3 => {
                    let guests = 1 + (i % 4) as u32;
                    self.booking(customer, &slot((w + i) % SLOTS), guests).await
                }
                _ => self.cancel_and_restock(customer, &lines[0].0).await,
            };
            out = out.merge(done);
            i += 1;
        }
        out
    }
}

/// Every read model's table as JSON rows, in catalog order.
async fn snapshot_all(app: &TestApp) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for projection in catalog::all() {
        out.push((projection.table(), app.snapshot(projection.table()).await));
    }
    out
}

/// The table's object id: a rebuild's swap changes it.
async fn table_oid(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar("SELECT $1::text::regclass::oid::int8")
        .bind(table)
        .fetch_one(&app.pool)
        .await
        .expect("table oid")
}

async fn events_of(app: &TestApp, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&app.pool)
        .await
        .expect("count events")
}

/// Asserts each row's `position` is its aggregate's last event and that every aggregate of
/// the type has exactly one row.
async fn assert_rows_are_at_their_last_event(app: &TestApp, projection: &dyn Projection) {
    let table = projection.table();
    let (rows, at_last, aggregates): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM {table}), \
                (SELECT count(*) FROM {table} t JOIN \
                   (SELECT aggregate_id, max(global_position) AS last FROM events \
                     WHERE aggregate_type = $1 GROUP BY aggregate_id) e \
                   ON e.aggregate_id = t.id::text AND e.last = t.position), \
                (SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1)"
    ))
    .bind(projection.aggregate_type())
    .fetch_one(&app.pool)
    .await
    .expect("row positions");
    assert!(rows > 0, "{table} is empty");
    assert_eq!(
        (rows, at_last),
        (aggregates, aggregates),
        "{table}: rows, rows at their aggregate's last event, aggregates"
    );
}

/// Asserts the live read models agree with what the writers did and with the event store.
async fn assert_read_models_match_the_write_side(app: &TestApp, expected: &Expected) {
    for projection in catalog::all() {
        assert_rows_are_at_their_last_event(app, projection).await;
    }
    let orders: Vec<(Uuid, String, Option<Uuid>)> =
        sqlx::query_as("SELECT id, status, payment_id FROM rm_orders")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let orders: BTreeMap<_, _> = orders.into_iter().map(|(i, s, p)| (i, (s, p))).collect();
    assert!(
        orders == expected.orders,
        "rm_orders differs from the writers' orders"
    );
    let bookings: Vec<(Uuid, String, Option<Uuid>)> =
        sqlx::query_as("SELECT id, status, payment_id FROM rm_bookings")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let bookings: BTreeMap<_, _> = bookings.into_iter().map(|(i, s, p)| (i, (s, p))).collect();
    assert!(bookings == expected.bookings, "rm_bookings differs");
    let payments: Vec<(Uuid, String, Uuid)> =
        sqlx::query_as("SELECT id, status, owner_id FROM rm_payments")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let payments: BTreeMap<_, _> = payments.into_iter().map(|(i, s, o)| (i, (s, o))).collect();
    assert!(payments == expected.payments, "rm_payments differs");
    assert_stock_matches_the_write_side(app).await;
}

/// Asserts every stock row's counts and flags equal the aggregate's, loaded from the event
/// store.
async fn assert_stock_matches_the_write_side(app: &TestApp) {
    let rows: Vec<(String, i64, i64, i64, bool, bool)> = sqlx::query_as(
        "SELECT id, on_hand, reserved, available, low_stock, depleted FROM rm_stock_items \
         ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for (sku, on_hand, reserved, available, low_stock, depleted) in rows {
        let item = app.bus.load::<StockItem>(&sku).await.unwrap();
        let threshold = item.low_stock_threshold();
        let stored = (
            i64::from(item.on_hand()),
            i64::from(item.reserved()),
            i64::from(item.available()),
            // Threshold 0 means "never low", as the aggregate's low-stock event has it (this
            // check used to call an empty item with threshold 0 low).
            threshold > 0 && item.available() <= threshold,
            item.available() == 0,
        );
        assert_eq!(
            (on_hand, reserved, available, low_stock, depleted),
            stored,
            "stock row {sku} vs its aggregate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_events_fold_into_the_rows_a_rebuild_from_zero_produces() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    let writer = Writer::new(&app);
    for i in 0..PRODUCTS {
        writer
            .run::<StockItem>(
                product(i).as_str(),
                register(&product(i), StockKind::Product, PLENTY, 10),
            )
            .await;
    }
    for i in 0..SLOTS {
        let starts_at = chrono::Utc::now() + chrono::Duration::days(30 + i as i64);
        writer
            .run::<StockItem>(
                slot(i).as_str(),
                register(&slot(i), StockKind::TimeSlot { starts_at }, PLENTY, 0),
            )
            .await;
    }

    // Act: concurrent writers while the server's projections run.
    let writers = (0..WRITERS).map(|w| tokio::spawn(writer.clone().drive(w)));
    let expected = join_all(writers)
        .await
        .into_iter()
        .map(|r| r.expect("writer task"))
        .fold(Expected::default(), Expected::merge);
    let events = app.event_count().await;
    app.catch_up().await;
    let live = snapshot_all(&app).await;

    // Assert: the live read models equal the write side.
    assert!(events >= TARGET_EVENTS as i64, "only {events} events");
    assert!(expected.orders.len() > 100 && expected.bookings.len() > 50);
    assert_read_models_match_the_write_side(&app, &expected).await;

    // Act: rebuild every projection from position zero.
    for projection in catalog::all() {
        let table = projection.table();
        let before = table_oid(&app, table).await;
        let progress = progress();
        let report = rebuild::rebuild(&app.pool, projection, &progress)
            .await
            .unwrap_or_else(|e| panic!("rebuild {}: {e}", projection.name()));
        assert_eq!(
            report.events as i64,
            events_of(&app, projection.aggregate_type()).await,
            "{table}: the rebuild applied every event of its type"
        );
        assert_eq!(progress.borrow().phase, Phase::Done);
        assert_ne!(table_oid(&app, table).await, before, "{table} was swapped");
    }
    let rebuilt = snapshot_all(&app).await;

    // Assert: row for row, the rebuilt tables are the live ones.
    for ((table, live_rows), (_, rebuilt_rows)) in live.iter().zip(&rebuilt) {
        assert_eq!(live_rows.len(), rebuilt_rows.len(), "{table} row count");
        let first_difference = live_rows.iter().zip(rebuilt_rows).find(|(a, b)| a != b);
        assert!(
            first_difference.is_none(),
            "{table} differs after rebuild: {first_difference:?}"
        );
    }
    // The live runners carry on in the swapped-in tables.
    let restock = StockItemCommand::Restock {
        quantity: quantity(7),
    };
    let committed = app
        .bus
        .execute::<StockItem>("P-00", restock, &meta())
        .await
        .unwrap();
    let expected_on_hand = app.bus.load::<StockItem>("P-00").await.unwrap().on_hand();
    let (status, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/P-00?min_position={}",
            committed.position.unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["on_hand"], i64::from(expected_on_hand));
}

/// Stock levels seeded for the query-during-rebuild test: `KNOWN` ends with this many.
const KNOWN_ON_HAND: i64 = 62;
const SEEDED_ITEMS: usize = 150;

fn seeded(i: usize) -> Sku {
    Sku::parse(&format!("R-{i:03}")).unwrap()
}

/// What the readers saw while rebuilds ran.
#[derive(Default)]
struct Reads {
    made: AtomicUsize,
    empty: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Reads {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Lists a page of stock and reads `KNOWN` until `stop`, recording anything unexpected.
async fn read_until(app: &TestApp, stop: &AtomicBool, reads: &Reads) {
    while !stop.load(Ordering::Relaxed) {
        let (status, page) = app.get_json("/api/v1/stock-items?per_page=100").await;
        reads.made.fetch_add(1, Ordering::Relaxed);
        let items = page["items"].as_array().map_or(0, Vec::len);
        if status != 200 {
            reads.fail(format!("list answered {status}: {page}"));
        } else if items == 0 {
            reads.empty.fetch_add(1, Ordering::Relaxed);
        } else if items != 100 || page["has_more"] != true {
            reads.fail(format!(
                "list had {items} items, has_more {}",
                page["has_more"]
            ));
        }
        let (status, item) = app.get_json("/api/v1/stock-items/KNOWN").await;
        reads.made.fetch_add(1, Ordering::Relaxed);
        if status != 200 || item["on_hand"] != KNOWN_ON_HAND {
            reads.fail(format!("KNOWN answered {status}: {item}"));
        }
    }
}

/// This process's latest rebuild of `name` as `GET /admin/projections` shows it.
async fn rebuild_state(app: &TestApp, name: &str) -> Value {
    let (status, list) = app.get_json("/admin/projections").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("a list of projections")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))["rebuild"]
        .clone()
}

/// Polls `GET /admin/projections` until `name`'s rebuild is in `phase`; panics if it fails
/// (unless `phase` is `failed`) or takes longer than [`REBUILD_TIMEOUT`].
async fn wait_for_phase(app: &TestApp, name: &str, phase: &str) -> Value {
    let deadline = tokio::time::Instant::now() + REBUILD_TIMEOUT;
    loop {
        let state = rebuild_state(app, name).await;
        if state["phase"] == phase {
            return state;
        }
        assert_ne!(
            state["phase"], "failed",
            "rebuild of {name} failed: {state}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "rebuild of {name} never reached {phase}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn post_rebuild(app: &TestApp, name: &str) -> reqwest::Response {
    app.post(&format!("/admin/projections/{name}/rebuild"), &json!({}))
        .await
}

/// Starts a rebuild over HTTP and waits until it is done.
async fn rebuild_over_http(app: &TestApp, name: &str) -> Value {
    let response = post_rebuild(app, name).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["projection"], name);
    wait_for_phase(app, name, "done").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_an_error_or_an_empty_table_while_stock_items_is_rebuilt() {
    // Arrange: 151 items and a few thousand restocks.
    let app = spawn_app_without_sagas().await;
    let writer = Writer::new(&app);
    let known = Sku::parse("KNOWN").unwrap();
    writer
        .run::<StockItem>("KNOWN", register(&known, StockKind::Product, 42, 0))
        .await;
    for i in 0..SEEDED_ITEMS {
        writer
            .run::<StockItem>(
                seeded(i).as_str(),
                register(&seeded(i), StockKind::Product, 10, 2),
            )
            .await;
    }
    let restock = |n| StockItemCommand::Restock {
        quantity: quantity(n),
    };
    let seeders = (0..WRITERS).map(|w| {
        let writer = writer.clone();
        tokio::spawn(async move {
            for i in 0..180 {
                let sku = seeded((w * 7 + i) % SEEDED_ITEMS);
                writer.run::<StockItem>(sku.as_str(), restock(1)).await;
            }
        })
    });
    join_all(seeders).await;
    for _ in 0..20 {
        writer.run::<StockItem>("KNOWN", restock(1)).await;
    }
    app.catch_up().await;
    let seeded_events = app.event_count().await;
    let stock = catalog::find("stock_items").unwrap();

    // Act: readers and a writer run while stock_items is rebuilt six times, alternately
    // over HTTP and directly.
    let stop = AtomicBool::new(false);
    let reads = Reads::default();
    let readers = join_all((0..4).map(|_| read_until(&app, &stop, &reads)));
    let churn = async {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let sku = seeded(i % SEEDED_ITEMS);
            writer.run::<StockItem>(sku.as_str(), restock(2)).await;
            i += 1;
        }
        i
    };
    let rebuilds = async {
        let mut during = 0;
        for _ in 0..3 {
            let before = reads.made.load(Ordering::Relaxed);
            let state = rebuild_over_http(&app, "stock_items").await;
            assert!(
                state["applied"].as_u64() >= state["total"].as_u64(),
                "{state}"
            );
            let report = rebuild::rebuild(&app.pool, stock, &progress())
                .await
                .expect("direct rebuild");
            assert!(report.events as i64 >= seeded_events, "{report:?}");
            during += reads.made.load(Ordering::Relaxed) - before;
        }
        stop.store(true, Ordering::Relaxed);
        during
    };
    let (_, churned, during) = tokio::join!(readers, churn, rebuilds);

    // Assert
    let made = reads.made.load(Ordering::Relaxed);
    println!("{made} reads in all, {during} while stock_items was being rebuilt");
    let failures = std::mem::take(&mut *reads.failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed reads, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(reads.empty.load(Ordering::Relaxed), 0, "empty lists");
    assert!(during > 0, "no read overlapped a rebuild");
    assert!(churned > 0);
    // Writes made during the rebuilds all reached the final table.
    app.catch_up().await;
    assert_stock_matches_the_write_side(&app).await;
    assert_rows_are_at_their_last_event(&app, stock).await;
}

#[tokio::test]
async fn a_second_rebuild_of_a_projection_is_refused_while_one_holds_its_lock() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("LOCKED", 5).await;
    app.catch_up().await;
    let stock = catalog::find("stock_items").unwrap();
    let original = table_oid(&app, "rm_stock_items").await;

    // Act & assert: another process's rebuild holds the rebuild lock.
    let holder = app
        .hold_lock(
        "SELECT pg_advisory_lock(hashtextextended('reserva.subscription.rebuild.stock_items', 0))",
    )
    .await;
    let refused = rebuild::rebuild(&app.pool, stock, &progress()).await;
    assert!(
        matches!(&refused, Err(RebuildError::AlreadyRunning(name)) if name == "stock_items"),
        "{refused:?}"
    );
    assert_eq!(post_rebuild(&app, "stock_items").await.status(), 202);
    let state = wait_for_phase(&app, "stock_items", "failed").await;
    assert!(
        state["error"].as_str().unwrap().contains("already running"),
        "{state}"
    );
    assert_eq!(table_oid(&app, "rm_stock_items").await, original);
    holder.close().await.unwrap();

    // Act & assert: our own rebuild, stopped just before its swap, holds the lock.
    let swap_blocker = app
        .hold_lock(
        "SELECT pg_advisory_lock_shared(hashtextextended('reserva.subscription.swap.stock_items', 0))",
    )
    .await;
    assert_eq!(post_rebuild(&app, "stock_items").await.status(), 202);
    wait_for_phase(&app, "stock_items", "swapping").await;
    let second = post_rebuild(&app, "stock_items").await;
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    let problem: Value = second.json().await.unwrap();
    assert_eq!(problem["code"], "rebuild_running");
    let direct = rebuild::rebuild(&app.pool, stock, &progress()).await;
    assert!(
        matches!(&direct, Err(RebuildError::AlreadyRunning(_))),
        "{direct:?}"
    );
    swap_blocker.close().await.unwrap();
    wait_for_phase(&app, "stock_items", "done").await;
    assert_ne!(table_oid(&app, "rm_stock_items").await, original);
    let (status, item) = app
        .get_json(&format!(
            "/api/v1/stock-items/LOCKED?min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!((status, &item["on_hand"]), (200, &json!(5)), "{item}");
}

#[tokio::test]
async fn rebuilding_an_unknown_projection_is_404_problem_json() {
    let app = spawn_app_without_sagas().await;

    let response = post_rebuild(&app, "nope").await;

    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "projection_not_found");
    for name in catalog::names() {
        assert!(problem["detail"].as_str().unwrap().contains(name));
    }
}

/// Index and constraint names of every read-model table, sorted.
async fn index_names(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT tablename::text, indexname::text FROM pg_indexes \
         WHERE tablename LIKE 'rm\\_%' ORDER BY 1, 2",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rebuilds_keep_the_tables_indexes_under_their_own_names() {
    // Arrange
    let app = spawn_app_without_sagas().await;
    app.register_product("IDX-1", 3).await;
    let before = index_names(&app).await;
    assert!(before.len() >= 12, "{before:?}");

    // Act: rebuild every projection twice.
    for _ in 0..2 {
        for projection in catalog::all() {
            let (progress, _) = watch::channel(Progress {
                phase: Phase::Preparing,
                applied: 0,
                total: 0,
            });
            rebuild::rebuild(&app.pool, projection, &progress)
                .await
                .unwrap();
        }
    }

    // Assert: the same indexes by the same names, the primary keys still primary keys.
    assert_eq!(index_names(&app).await, before);
    let primary_keys: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE contype = 'p' \
         AND conrelid::regclass::text LIKE 'rm\\_%' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        primary_keys,
        [
            "rm_bookings_pkey",
            "rm_orders_pkey",
            "rm_payments_pkey",
            "rm_stock_items_pkey"
        ]
    );
    let item: Value = app
        .get_at("/api/v1/stock-items/IDX-1", app.head().await)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item["on_hand"], 3);
}

/// A deadline no test reaches.
fn later() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::hours(1)
}
