//! Cold loads of one long StockItem, with and without its snapshot.

use anyhow::{Context, ensure};
use chrono::{DateTime, Duration, Utc};
use commands::snapshots::{self, Loaded};
use commands::{CommandBus, CommandMetadata, SnapshotPolicy};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand, StockKind};
use domain::{Currency, Money, OrderId, Owner, Quantity, ReservationId, Sku};
use futures::TryStreamExt;
use sqlx::PgPool;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events of each StockItem (at least 3).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Snapshot policy of the bus that writes them.
    #[arg(long, default_value_t = 500)]
    every: usize,
    /// Timed loads of each kind; the median is reported.
    #[arg(long, default_value_t = 7)]
    loads: usize,
    /// Prefix of the two SKUs (`<prefix>-BOUNDED`, `<prefix>-ALL`).
    #[arg(long, default_value = "COLD")]
    prefix: String,
}

/// One StockItem's history: how far apart its holds' expiries are.
struct Stream {
    sku: String,
    /// Simulated time between two holds.
    step: Duration,
    label: &'static str,
}

pub async fn run(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    ensure!(args.events >= 3, "--events must be at least 3");
    let streams = [
        Stream {
            sku: format!("{}-BOUNDED", args.prefix),
            step: Duration::hours(1),
            label: "bounded (holds 1 h apart: closed ones forgotten after 120 days)",
        },
        Stream {
            sku: format!("{}-ALL", args.prefix),
            step: Duration::seconds(1),
            label: "unbounded (holds 1 s apart: all within 120 days, nothing forgotten)",
        },
    ];
    let bus = CommandBus::new(pool.clone()).with_snapshots(SnapshotPolicy { every: args.every });
    let started = Instant::now();
    let writes = streams
        .iter()
        .map(|s| write(&bus, &s.sku, s.step, args.events));
    futures::future::try_join_all(writes).await?;
    println!(
        "coldload: wrote 2 x {} events through the bus (snapshot every {}) in {:.1} s",
        args.events,
        args.every,
        started.elapsed().as_secs_f64()
    );
    for stream in &streams {
        measure(pool, stream, args.loads).await?;
    }
    Ok(())
}

/// Register, then reserve + commit / reserve + release pairs (alternating), then restocks to
/// make up `events` exactly; each command is its own transaction, as through the API.
async fn write(bus: &CommandBus, sku: &str, step: Duration, events: u64) -> anyhow::Result<()> {
    let meta = CommandMetadata::system("bench:coldload");
    let parsed = Sku::parse(sku)?;
    let pairs = (events - 1) / 2;
    let register = StockItemCommand::Register {
        sku: parsed.clone(),
        name: "cold load".to_owned(),
        kind: StockKind::Product,
        quantity: u32::try_from(pairs + 10)?,
        low_stock_threshold: 0,
        unit_price: Money::new(1000, Currency::parse("EUR")?)?,
    };
    bus.execute::<StockItem>(sku, register, &meta).await?;
    let start: DateTime<Utc> = "2020-01-01T00:00:00Z".parse()?;
    for n in 0..pairs {
        let owner = Owner::Order(OrderId(uuid::Uuid::from_u128(u128::from(n) + 1)));
        let reservation_id = ReservationId::for_owner(owner, &parsed);
        let reserve = StockItemCommand::Reserve {
            reservation_id,
            quantity: Quantity::new(1)?,
            owner,
            expires_at: start + step * i32::try_from(n)?,
        };
        let close = if n % 2 == 0 {
            StockItemCommand::CommitReservation { reservation_id }
        } else {
            StockItemCommand::ReleaseReservation {
                reservation_id,
                reason: ReleaseReason::Expired,
            }
        };
        for command in [reserve, close] {
            let committed = bus.execute::<StockItem>(sku, command, &meta).await?;
            ensure!(
                committed.events == 1,
                "{sku}: pair {n} wrote {} events",
                committed.events
            );
        }
    }
    for _ in 1 + 2 * pairs..events {
        let restock = StockItemCommand::Restock {
            quantity: Quantity::new(1)?,
        };
        bus.execute::<StockItem>(sku, restock, &meta).await?;
    }
    Ok(())
}

/// The stream's rows exactly as a load reads them, decoded to owned values but not folded:
/// the floor of a load without a snapshot.
const RAW: &str = "SELECT sequence, event_type, event_version, payload::text FROM events \
     WHERE aggregate_type = 'stock_item' AND aggregate_id = $1 ORDER BY sequence";

async fn raw(pool: &PgPool, sku: &str) -> anyhow::Result<u64> {
    let mut rows = sqlx::query_as::<_, (i64, String, String, String)>(RAW)
        .bind(sku)
        .fetch(pool);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        std::hint::black_box(&row);
        count += 1;
    }
    Ok(count)
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

async fn measure(pool: &PgPool, stream: &Stream, loads: usize) -> anyhow::Result<()> {
    let sku = stream.sku.as_str();
    // Warm the caches once each, so every timed run is alike (the pages are in memory).
    let events = raw(pool, sku).await?;
    let folded: Loaded<StockItem> = snapshots::load(pool, sku, false).await?;
    let from_snapshot: Loaded<StockItem> = snapshots::load(pool, sku, true).await?;
    ensure!(
        folded
            == Loaded {
                from_snapshot: folded.from_snapshot,
                ..from_snapshot.clone()
            },
        "{sku}: the snapshot load and the full fold disagree"
    );
    let (mut raw_s, mut cold_s, mut snap_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..loads.max(1) {
        let t = Instant::now();
        raw(pool, sku).await?;
        raw_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(snapshots::load::<StockItem>(pool, sku, false).await?);
        cold_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(snapshots::load::<StockItem>(pool, sku, true).await?);
        snap_s.push(t.elapsed().as_secs_f64());
    }
    let (raw_m, cold_m, snap_m) = (median(raw_s), median(cold_s), median(snap_s));
    let state = serde_json::to_string(&folded.aggregate).context("serializing the state")?;
    let snapshot_bytes: i64 = sqlx::query_scalar(
        "SELECT pg_column_size(payload)::bigint FROM aggregate_snapshots \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = $1",
    )
    .bind(sku)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0);
    let ms = |s: f64| s * 1000.0;
    println!("coldload {sku}: {}", stream.label);
    println!(
        "  state: {events} events, {} closed reservations remembered, {} open, \
         {} bytes as JSON ({snapshot_bytes} bytes stored as the snapshot)",
        folded.aggregate.remembered(),
        folded.aggregate.reservations().len(),
        state.len()
    );
    println!(
        "  reference: raw read of its {events} rows {:.1} ms (median of {loads})",
        ms(raw_m)
    );
    println!(
        "  load without snapshot: {:.1} ms = {:.2}x the raw read",
        ms(cold_m),
        cold_m / raw_m
    );
    println!(
        "  load with snapshot (at {}, then {} events): {:.2} ms = {:.4}x the raw read, {:.4}x the load without",
        from_snapshot.from_snapshot,
        from_snapshot.sequence - from_snapshot.from_snapshot,
        ms(snap_m),
        snap_m / raw_m,
        snap_m / cold_m
    );
    Ok(())
}
