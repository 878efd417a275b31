//! The whole generated history: the catalogue first, then many purchases interleaved the way
//! concurrent customers interleave them, with stock-keeping in between.

use chrono::{DateTime, Duration, Utc};
use domain::{Currency, CustomerId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

use crate::catalogue::Catalogue;
use crate::purchase::Purchase;
use crate::record::{Recorder, uuid};

/// Most events one step can record: a restock, then a reservation that crosses the low-stock
/// threshold and depletes the item. Closer than this to the target, only restocks (one event
/// each) are made, so exactly the requested number is written.
const MAX_EVENTS_PER_STEP: u64 = 4;

/// Distinct customers placing the orders and bookings.
const CUSTOMERS: usize = 20_000;

/// What to generate.
pub struct Plan {
    pub events: u64,
    pub stock_items: usize,
    pub open_purchases: usize,
    pub seed: u64,
}

/// Records `plan.events` events into `out`; returns how many per aggregate type.
///
/// # Errors
/// The writer stopped, or the domain refused a generated command (a generator bug).
pub fn generate(plan: &Plan, mut out: Recorder) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    // A fixed start keeps the payloads (expiry and slot times) identical across runs.
    let mut now: DateTime<Utc> = DateTime::from_timestamp(1_767_600_000, 0).unwrap_or_default();
    let mut cat = Catalogue::new(Currency::parse("MXN")?);
    let customers: Vec<CustomerId> = (0..CUSTOMERS).map(|_| CustomerId(uuid(&mut rng))).collect();
    while cat.len() < plan.stock_items.max(1) && out.total < plan.events {
        cat.register(&mut rng, now, &mut out)?;
    }
    let mut open: Vec<Purchase> = Vec::with_capacity(plan.open_purchases);
    while out.total < plan.events {
        now += Duration::milliseconds(rng.random_range(0..200));
        if plan.events - out.total < MAX_EVENTS_PER_STEP {
            cat.replenish(&mut rng, &mut out)?;
            continue;
        }
        // Replenishment roughly matches what purchases sell, so items do run low and some
        // purchases find them short.
        let roll = rng.random_range(0..1000);
        if roll < 4 {
            cat.replenish(&mut rng, &mut out)?;
        } else if roll < 9 {
            cat.adjust(&mut rng, &mut out)?;
        } else if open.len() < plan.open_purchases.max(1) {
            let customer = customers[rng.random_range(0..customers.len())];
            let booking = !cat.slots().is_empty() && rng.random_bool(0.25);
            open.push(if booking {
                Purchase::booking(customer, &cat, &mut rng, now)?
            } else {
                Purchase::order(customer, &cat, &mut rng, now)?
            });
        } else {
            let i = rng.random_range(0..open.len());
            if open[i].step(&mut cat, &mut rng, &mut out)? {
                open.swap_remove(i);
            }
        }
    }
    out.finish()
}
