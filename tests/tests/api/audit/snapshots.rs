//! Snapshots under concurrent writers: many clients on one stock item through several buses
//! (each with its own cache and locks, as several instances would be) leave a snapshot that is
//! exactly the state its events fold to, a hash chain that holds, and never sell what is not
//! there.

use super::{Store, sku, stock};
use commands::audit::history::{fold_json, stream};
use commands::audit::replay::{Scope, replay};
use commands::audit::verify;
use commands::snapshots::load;
use commands::{CommandBus, CommandError, CommandMetadata, RetryPolicy, SnapshotPolicy};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand, StockItemError};
use domain::{OrderId, Owner, Quantity, ReservationId};
use std::time::Duration;
use tests::register_product_command;

const CLIENTS: usize = 16;
const ROUNDS: usize = 6;
const BUSES: usize = 4;
const EVERY: SnapshotPolicy = SnapshotPolicy { every: 7 };
const INITIAL: u32 = 10;

/// What one client did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    held: usize,
    refused: usize,
    sold_units: u32,
    sold: usize,
    released: usize,
    restocked: u32,
}

impl std::ops::Add for Tally {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            held: self.held + o.held,
            refused: self.refused + o.refused,
            sold_units: self.sold_units + o.sold_units,
            sold: self.sold + o.sold,
            released: self.released + o.released,
            restocked: self.restocked + o.restocked,
        }
    }
}

async fn execute(bus: &CommandBus, command: StockItemCommand) -> Result<(), StockItemError> {
    match bus
        .execute::<StockItem>("HOT-1", command, &CommandMetadata::system("test"))
        .await
    {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(refused)) => Err(refused),
        Err(other) => panic!("only a business refusal is acceptable: {other}"),
    }
}

/// One client: each round holds 1–3 units, then buys or releases them; every third round it
/// also restocks 2.
async fn client(bus: CommandBus, client: usize) -> Tally {
    let mut tally = Tally::default();
    for round in 0..ROUNDS {
        let quantity = 1 + ((client + round) % 3) as u32;
        let owner = Owner::Order(OrderId::new_random());
        let reservation_id = ReservationId::for_owner(owner, &sku("HOT-1"));
        let reserve = StockItemCommand::Reserve {
            reservation_id,
            quantity: Quantity::new(quantity.into()).unwrap(),
            owner,
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        };
        match execute(&bus, reserve).await {
            Ok(()) => {
                tally.held += 1;
                tokio::task::yield_now().await;
                if (client + round).is_multiple_of(2) {
                    execute(&bus, StockItemCommand::CommitReservation { reservation_id })
                        .await
                        .expect("a held reservation can be bought");
                    tally.sold += 1;
                    tally.sold_units += quantity;
                } else {
                    let reason = ReleaseReason::Cancelled;
                    let release = StockItemCommand::ReleaseReservation {
                        reservation_id,
                        reason,
                    };
                    execute(&bus, release)
                        .await
                        .expect("a held reservation can be released");
                    tally.released += 1;
                }
            }
            Err(StockItemError::InsufficientStock { .. }) => tally.refused += 1,
            Err(other) => panic!("client {client}: {other}"),
        }
        if round % 3 == 2 {
            let quantity = Quantity::new(2).unwrap();
            execute(&bus, StockItemCommand::Restock { quantity })
                .await
                .expect("a restock");
            tally.restocked += 2;
        }
    }
    tally
}

fn count(events: &[commands::audit::history::AuditEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

#[tokio::test]
async fn concurrent_clients_on_several_buses_leave_a_snapshot_equal_to_the_full_fold() {
    // Arrange: HOT-1 with 10 units and low-stock alerts (commands of two events); four buses
    // that retry conflicts patiently, snapshotting every 7 events.
    let store = Store::new(|bus| bus.with_snapshots(EVERY)).await;
    stock(
        &store.bus,
        "HOT-1",
        register_product_command("HOT-1", INITIAL, 3),
    )
    .await;
    let retry = RetryPolicy {
        max_attempts: 500,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    };
    let buses: Vec<CommandBus> = (0..BUSES)
        .map(|_| CommandBus::with_retry(store.pool.clone(), retry).with_snapshots(EVERY))
        .collect();

    // Act
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(buses[i % BUSES].clone(), i)))
        .collect();
    let mut tally = Tally::default();
    for handle in clients {
        tally = tally + handle.await.expect("a client finished");
    }
    let full = load::<StockItem>(&store.pool, "HOT-1", false)
        .await
        .unwrap();
    let snapshotted = load::<StockItem>(&store.pool, "HOT-1", true).await.unwrap();
    let fresh = CommandBus::new(store.pool.clone())
        .with_snapshots(EVERY)
        .load::<StockItem>("HOT-1")
        .await
        .unwrap();
    let replayed = replay(&store.pool, Scope::All { dry_run: true }, |_| {})
        .await
        .unwrap();
    let chained = verify(&store.pool, 0, None, |_| {}).await.unwrap();

    // Assert: the snapshot is the latest one due, and what it and the events after it fold to
    // is the whole stream's state, for every reader.
    let events = stream(&store.pool, "stock_item", "HOT-1", i64::MAX, 0)
        .await
        .unwrap();
    let n = events.len();
    assert_eq!((full.sequence, full.from_snapshot), (n, 0));
    assert!(n >= 2 * EVERY.every, "{n} events");
    assert!(
        snapshotted.from_snapshot > n - EVERY.every && snapshotted.from_snapshot <= n,
        "snapshot at {} of {n}",
        snapshotted.from_snapshot
    );
    assert_eq!(snapshotted.sequence, n);
    assert_eq!(snapshotted.aggregate, full.aggregate);
    assert_eq!(fresh, full.aggregate);
    for bus in &buses {
        assert_eq!(
            bus.load::<StockItem>("HOT-1").await.unwrap(),
            full.aggregate
        );
    }
    assert!(replayed.is_clean(), "{:#?}", replayed.problems);
    assert_eq!(replayed.snapshots, 1);
    assert!(chained.is_clean(), "{:#?}", chained.findings);
    assert_eq!(
        chained.events, n as u64,
        "one hash chain through every writer"
    );

    // …and nothing was oversold, at any point of the stream.
    let item = &full.aggregate;
    assert_eq!(item.on_hand(), INITIAL + tally.restocked - tally.sold_units);
    assert_eq!((item.reserved(), item.available()), (0, item.on_hand()));
    assert!(item.reservations().is_empty());
    for end in 1..=n {
        let state = fold_json("stock_item", "HOT-1", &events[..end]).unwrap();
        let state: StockItem = serde_json::from_value(state).unwrap();
        assert!(
            state.reserved() <= state.on_hand(),
            "after event {end}: {} held of {}",
            state.reserved(),
            state.on_hand()
        );
    }
    assert_eq!(tally.held + tally.refused, CLIENTS * ROUNDS);
    assert_eq!(count(&events, "StockReserved"), tally.held);
    assert_eq!(count(&events, "ReservationCommitted"), tally.sold);
    assert_eq!(count(&events, "ReservationReleased"), tally.released);
    assert_eq!(count(&events, "StockRestocked"), CLIENTS * (ROUNDS / 3));
}
