//! The audit trail against a real PostgreSQL: states as of earlier moments, one request's
//! causation tree, tamper evidence (hash chains and signed checkpoints), replay of today's code
//! over stored events and snapshots, old event shapes read through the upcasters, and
//! snapshots taken under concurrent writers.
//!
//! Most tests run on a bare store (a migrated database and a command bus, nothing else), so
//! every event in it is one the test wrote; the trace and upcaster tests run the whole service.
//!
//! Shared here: the bare store, the stock and order commands the tests write history with,
//! and raw SQL for what no command can write (old shapes, forgeries).

use commands::audit::{AuditKey, FindingKind, Signed, sign};
use commands::{CommandBus, CommandMetadata, Committed};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand};
use domain::{Currency, CustomerId, Money, OrderId, Owner, Quantity, ReservationId, Sku};
use serde_json::Value;
use sqlx::PgPool;
use tests::{TestDatabase, register_product_command};

mod as_of;
mod checkpoints;
mod replay;
mod snapshots;
mod tamper;
mod trace;
mod upcast;

/// A migrated database and a bus on it; no server, no sagas, no projections.
struct Store {
    bus: CommandBus,
    pool: PgPool,
    _database: TestDatabase,
}

impl Store {
    /// A fresh store with a bus that takes no snapshots unless `configure` says so.
    async fn new(configure: impl FnOnce(CommandBus) -> CommandBus) -> Self {
        let database = tests::fresh_database(24).await;
        commands::MIGRATOR
            .run(&database.pool)
            .await
            .expect("migrate");
        let pool = database.pool.clone();
        Self {
            bus: configure(CommandBus::new(pool.clone())),
            pool,
            _database: database,
        }
    }

    async fn bare() -> Self {
        Self::new(|bus| bus.with_snapshots(commands::SnapshotPolicy { every: 0 })).await
    }
}

fn meta() -> CommandMetadata {
    CommandMetadata::system("test")
}

fn sku(sku: &str) -> Sku {
    Sku::parse(sku).expect("a valid sku")
}

async fn stock(bus: &CommandBus, id: &str, command: StockItemCommand) -> Committed {
    bus.execute::<StockItem>(id, command, &meta())
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// Registers product `id` with `quantity` on hand (no low-stock alerts).
async fn register(bus: &CommandBus, id: &str, quantity: u32) -> Committed {
    stock(bus, id, register_product_command(id, quantity, 0)).await
}

async fn restock(bus: &CommandBus, id: &str, quantity: i64) -> Committed {
    let quantity = Quantity::new(quantity).expect("a quantity");
    stock(bus, id, StockItemCommand::Restock { quantity }).await
}

/// Holds `quantity` of `id` for a new order for an hour; returns the hold.
async fn reserve(bus: &CommandBus, id: &str, quantity: i64) -> (ReservationId, Committed) {
    let owner = Owner::Order(OrderId::new_random());
    let reservation_id = ReservationId::for_owner(owner, &sku(id));
    let command = StockItemCommand::Reserve {
        reservation_id,
        quantity: Quantity::new(quantity).expect("a quantity"),
        owner,
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    (reservation_id, stock(bus, id, command).await)
}

async fn commit(bus: &CommandBus, id: &str, reservation_id: ReservationId) -> Committed {
    stock(
        bus,
        id,
        StockItemCommand::CommitReservation { reservation_id },
    )
    .await
}

async fn release(bus: &CommandBus, id: &str, reservation_id: ReservationId) -> Committed {
    let reason = ReleaseReason::Cancelled;
    let command = StockItemCommand::ReleaseReservation {
        reservation_id,
        reason,
    };
    stock(bus, id, command).await
}

/// Places an order for `quantity` × `item` (1500 MXN each) through the bus; returns its id.
async fn place_order(bus: &CommandBus, item: &str, quantity: i64) -> String {
    let id = OrderId::new_random().to_string();
    let command = OrderCommand::Place {
        customer_id: CustomerId::new_random(),
        items: vec![OrderItem {
            sku: sku(item),
            quantity: Quantity::new(quantity).expect("a quantity"),
            unit_price: Money::new(1500, Currency::parse("MXN").expect("MXN")).expect("a price"),
        }],
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    bus.execute::<Order>(&id, command, &meta())
        .await
        .unwrap_or_else(|e| panic!("place {id}: {e}"));
    id
}

/// A row written by hand, as an older release (or a forger) would have written it: the
/// database fills position, transaction, time and hash as for any insert. Its metadata is the
/// aggregate's first event's. Returns its global position.
async fn insert_raw(
    pool: &PgPool,
    (aggregate_type, aggregate_id, sequence): (&str, &str, i64),
    (event_type, event_version): (&str, &str),
    payload: &Value,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
            event_version, payload, metadata) \
         SELECT $1, $2, $3, $4, $5, $6::json, coalesce( \
            (SELECT metadata FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
               AND sequence = 1), '{}'::json) \
         RETURNING global_position",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(event_type)
    .bind(event_version)
    .bind(payload.to_string())
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("insert {aggregate_type}/{aggregate_id}/{sequence}: {e}"))
}

/// Runs raw SQL behind the service's back; panics naming it when it fails.
async fn sql(pool: &PgPool, statement: &str) -> u64 {
    sqlx::query(statement)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
        .rows_affected()
}

/// The key the tests' checkpoints are signed with.
fn audit_key() -> AuditKey {
    AuditKey::new(b"reserva-audit-test-key".to_vec())
}

/// History under two checkpoints signed with `key`, and one event after them:
///
/// - checkpoint 1: MUG-1 events 1–3, CUP-1 1–4, PEN-1 1–2 (the last one written);
/// - checkpoint 2: MUG-1 4, PEN-1 3;
/// - not signed yet: MUG-1 5.
async fn signed_history(store: &Store, key: &AuditKey) -> [Signed; 2] {
    let bus = &store.bus;
    register(bus, "MUG-1", 10).await;
    register(bus, "CUP-1", 20).await;
    restock(bus, "MUG-1", 5).await;
    for quantity in 1..=3 {
        restock(bus, "CUP-1", quantity).await;
    }
    restock(bus, "MUG-1", 5).await;
    register(bus, "PEN-1", 1).await;
    restock(bus, "PEN-1", 1).await;
    let first = sign_all(&store.pool, key).await;
    restock(bus, "MUG-1", 1).await;
    restock(bus, "PEN-1", 1).await;
    let second = sign_all(&store.pool, key).await;
    restock(bus, "MUG-1", 1).await;
    assert_eq!((first.events, first.aggregates), (9, 3));
    assert_eq!((second.events, second.aggregates), (2, 2));
    [first, second]
}

/// Signs a checkpoint of everything written so far. A checkpoint covers only what the feed
/// may hand out, which stops at the oldest transaction still running on the server (any
/// database's), so this first waits for the feed to reach the last event.
async fn sign_all(pool: &PgPool, key: &AuditKey) -> Signed {
    let end = tests::feed_end(pool).await;
    tests::eventually("the feed's head to reach the last event", || async {
        let mut conn = pool.acquire().await.expect("a connection");
        let head = feed::read::head(&mut conn).await.expect("the feed's head");
        (head == Some(end)).then_some(())
    })
    .await;
    sign(pool, key)
        .await
        .expect("sign")
        .expect("a window to sign")
}

/// `(kind, aggregate_id, sequence)` of each finding, sorted, for comparing as a whole.
fn found(verified: &commands::audit::Verified) -> Vec<(FindingKind, String, Option<i64>)> {
    let mut found: Vec<_> = verified
        .findings
        .iter()
        .map(|f| (f.kind, f.aggregate_id.clone(), f.sequence))
        .collect();
    found.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    found
}
