//! The stock items every history draws on, and the stock-keeping that keeps them sellable.

use chrono::{DateTime, Duration, Utc};
use domain::stock_item::{ReleaseReason, StockItem, StockItemCommand, StockKind};
use domain::{Currency, Money, Owner, Quantity, ReservationId, Sku};
use rand::Rng;
use rand::rngs::StdRng;

use crate::record::{Recorder, Tracked, request_metadata};

const PRODUCTS: [&str; 8] = [
    "mug", "bowl", "apron", "tote", "candle", "plate", "vase", "tray",
];
const MATERIALS: [&str; 6] = ["Clay", "Linen", "Oak", "Copper", "Glass", "Wool"];
const EXPERIENCES: [&str; 5] = [
    "Walking tour",
    "Cooking class",
    "Kayak trip",
    "Pottery workshop",
    "Night market tour",
];

/// Every stock item, products and time slots, indexed by position.
pub struct Catalogue {
    items: Vec<Tracked<StockItem>>,
    skus: Vec<Sku>,
    prices: Vec<Money>,
    products: Vec<usize>,
    slots: Vec<usize>,
    currency: Currency,
}

impl Catalogue {
    pub fn new(currency: Currency) -> Self {
        Self {
            items: Vec::new(),
            skus: Vec::new(),
            prices: Vec::new(),
            products: Vec::new(),
            slots: Vec::new(),
            currency,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn sku(&self, item: usize) -> &Sku {
        &self.skus[item]
    }

    pub fn unit_price(&self, item: usize) -> Money {
        self.prices[item]
    }

    pub fn available(&self, item: usize) -> u32 {
        self.items[item].state.available()
    }

    pub fn products(&self) -> &[usize] {
        &self.products
    }

    pub fn slots(&self) -> &[usize] {
        &self.slots
    }

    /// Registers one more item: every fifth is a time slot, the rest products.
    pub fn register(
        &mut self,
        rng: &mut StdRng,
        now: DateTime<Utc>,
        out: &mut Recorder,
    ) -> anyhow::Result<()> {
        let n = self.items.len();
        let slot = n % 5 == 4;
        let (sku, name, kind, quantity, threshold, price) = if slot {
            let starts_at = now
                + Duration::days(rng.random_range(1..=60))
                + Duration::hours(rng.random_range(8..=18));
            (
                format!("SLOT-{n:05}"),
                EXPERIENCES[n % EXPERIENCES.len()].to_owned(),
                StockKind::TimeSlot { starts_at },
                rng.random_range(8..=40),
                if rng.random_bool(0.5) { 2 } else { 0 },
                rng.random_range(100..=1200) * 100,
            )
        } else {
            let name = format!(
                "{} {}",
                MATERIALS[rng.random_range(0..MATERIALS.len())],
                PRODUCTS[rng.random_range(0..PRODUCTS.len())]
            );
            let threshold = if rng.random_bool(0.2) {
                0
            } else {
                rng.random_range(5..=25)
            };
            let stock = rng.random_range(10..=120);
            let price = rng.random_range(5..=500) * 100;
            (
                format!("PRD-{n:05}"),
                name,
                StockKind::Product,
                stock,
                threshold,
                price,
            )
        };
        let sku = Sku::parse(&sku)?;
        let unit_price = Money::new(price, self.currency)?;
        let command = StockItemCommand::Register {
            sku: sku.clone(),
            name,
            kind,
            quantity,
            low_stock_threshold: threshold,
            unit_price,
        };
        let mut item = Tracked::new(sku.to_string());
        let meta = request_metadata(rng);
        item.execute(command, &meta, out)?;
        self.items.push(item);
        self.skus.push(sku);
        self.prices.push(unit_price);
        if slot {
            self.slots.push(n);
        } else {
            self.products.push(n);
        }
        Ok(())
    }

    /// A warehouse restock (or, for a slot, added seats): its own request, its own correlation.
    pub fn restock(
        &mut self,
        item: usize,
        quantity: u32,
        rng: &mut StdRng,
        out: &mut Recorder,
    ) -> anyhow::Result<()> {
        let quantity = Quantity::new(i64::from(quantity.clamp(1, Quantity::MAX)))?;
        let meta = request_metadata(rng);
        self.items[item].execute(StockItemCommand::Restock { quantity }, &meta, out)?;
        Ok(())
    }

    /// Restocks the emptiest of a few sampled products, as a replenishment job would.
    pub fn replenish(&mut self, rng: &mut StdRng, out: &mut Recorder) -> anyhow::Result<()> {
        let pool = if self.products.is_empty() {
            &self.slots
        } else {
            &self.products
        };
        let Some(item) = (0..3)
            .map(|_| pool[rng.random_range(0..pool.len())])
            .min_by_key(|&i| self.available(i))
        else {
            return Ok(());
        };
        let quantity = rng.random_range(20..=120);
        self.restock(item, quantity, rng, out)
    }

    /// A count correction: usually damage or loss, which may cross the low-stock threshold.
    pub fn adjust(&mut self, rng: &mut StdRng, out: &mut Recorder) -> anyhow::Result<()> {
        if self.products.is_empty() {
            return Ok(());
        }
        let item = self.products[rng.random_range(0..self.products.len())];
        let available = i64::from(self.available(item));
        let (delta, reason) = if available > 0 && rng.random_bool(0.7) {
            (
                -rng.random_range(1..=available.min(3)),
                "damaged in storage",
            )
        } else {
            (rng.random_range(1..=5), "cycle count correction")
        };
        let command = StockItemCommand::Adjust {
            delta,
            reason: reason.to_owned(),
        };
        let meta = request_metadata(rng);
        self.items[item].execute(command, &meta, out)?;
        Ok(())
    }

    /// Holds units for `owner`, or reports that too few are available (nothing recorded then:
    /// the aggregate would have refused the command).
    pub fn reserve(
        &mut self,
        item: usize,
        owner: Owner,
        quantity: Quantity,
        expires_at: DateTime<Utc>,
        meta: &str,
        out: &mut Recorder,
    ) -> anyhow::Result<bool> {
        if quantity.get() > self.available(item) {
            return Ok(false);
        }
        let command = StockItemCommand::Reserve {
            reservation_id: ReservationId::for_owner(owner, self.sku(item)),
            quantity,
            owner,
            expires_at,
        };
        self.items[item].execute(command, meta, out)?;
        Ok(true)
    }

    pub fn commit(
        &mut self,
        item: usize,
        owner: Owner,
        meta: &str,
        out: &mut Recorder,
    ) -> anyhow::Result<()> {
        let reservation_id = ReservationId::for_owner(owner, self.sku(item));
        let command = StockItemCommand::CommitReservation { reservation_id };
        self.items[item].execute(command, meta, out)?;
        Ok(())
    }

    pub fn release(
        &mut self,
        item: usize,
        owner: Owner,
        reason: ReleaseReason,
        meta: &str,
        out: &mut Recorder,
    ) -> anyhow::Result<()> {
        let reservation_id = ReservationId::for_owner(owner, self.sku(item));
        let command = StockItemCommand::ReleaseReservation {
            reservation_id,
            reason,
        };
        self.items[item].execute(command, meta, out)?;
        Ok(())
    }
}
