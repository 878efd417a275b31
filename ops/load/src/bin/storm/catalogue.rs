//! The scarce catalogue the customers fight over: products with few units, time slots with
//! few seats, and a few of each priced so the simulated gateway declines them.

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::json;

/// Price of a product unit; any number of units totals a multiple of 1500, which never ends
/// in `02` minor units, so the simulated gateway pays it.
pub const PRODUCT_PRICE: i64 = 1500;
/// Price of a declined product: one unit totals 1502, which the simulated gateway declines.
pub const DECLINED_PRODUCT_PRICE: i64 = 1502;
/// Price of a seat (paid for any number of guests).
pub const SEAT_PRICE: i64 = 2500;
/// Price of a declined slot's seat: one guest totals 2502.
pub const DECLINED_SEAT_PRICE: i64 = 2502;

/// The SKUs of one run.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// Products that pay.
    pub products: Vec<String>,
    /// Products whose one-unit order is declined.
    pub declined_products: Vec<String>,
    /// Time slots that pay.
    pub slots: Vec<String>,
    /// Time slots whose one-guest booking is declined.
    pub declined_slots: Vec<String>,
}

impl Catalogue {
    /// `products` products and `slots` slots under `prefix`; about one in five of each is a
    /// declined one (at least one each).
    pub fn new(prefix: &str, products: usize, slots: usize) -> Self {
        let declined = |n: usize| (n / 5).max(1);
        let name = |kind: &str, i: usize| format!("{prefix}-{kind}-{i:04}");
        Self {
            products: (0..products).map(|i| name("P", i)).collect(),
            declined_products: (0..declined(products)).map(|i| name("PD", i)).collect(),
            slots: (0..slots).map(|i| name("S", i)).collect(),
            declined_slots: (0..declined(slots)).map(|i| name("SD", i)).collect(),
        }
    }

    /// A random element of `skus`.
    pub fn pick<'a>(skus: &'a [String], rng: &mut impl Rng) -> &'a str {
        &skus[rng.random_range(0..skus.len())]
    }
}

/// Registers every SKU: products with `units` units, slots with `seats` seats. A 409 means
/// it exists already (a second run on the same database).
///
/// # Errors
/// A registration answered neither 202 nor 409, or the service did not answer.
pub async fn register(
    client: &reqwest::Client,
    url: &str,
    catalogue: &Catalogue,
    units: u32,
    seats: u32,
) -> anyhow::Result<()> {
    let starts_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let mut bodies = Vec::new();
    for (skus, price) in [
        (&catalogue.products, PRODUCT_PRICE),
        (&catalogue.declined_products, DECLINED_PRODUCT_PRICE),
    ] {
        for sku in skus {
            bodies.push(
                json!({"sku": sku, "name": "storm product", "kind": "product",
                "quantity": units, "low_stock_threshold": 2,
                "unit_price": {"amount": price, "currency": "MXN"}}),
            );
        }
    }
    for (skus, price) in [
        (&catalogue.slots, SEAT_PRICE),
        (&catalogue.declined_slots, DECLINED_SEAT_PRICE),
    ] {
        for sku in skus {
            bodies.push(
                json!({"sku": sku, "name": "storm slot", "kind": "time_slot",
                "quantity": seats, "starts_at": starts_at,
                "unit_price": {"amount": price, "currency": "MXN"}}),
            );
        }
    }
    let endpoint = format!("{url}/api/v1/stock-items");
    for body in bodies {
        let response = client
            .post(&endpoint)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("registering {}", body["sku"]))?;
        if !matches!(response.status().as_u16(), 202 | 409) {
            bail!("registering {}: {}", body["sku"], response.status());
        }
    }
    Ok(())
}

/// Restocks every paying product by `units` each `every` until `stop`, as a shop's staff
/// would during a drop: stock keeps arriving, so the storm is not only sold-out refusals.
pub async fn restock_until(
    world: std::sync::Arc<crate::customer::World>,
    every: std::time::Duration,
    units: u32,
) -> crate::stats::Samples {
    use std::sync::atomic::Ordering;
    let mut samples = crate::stats::Samples::default();
    while !world.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        for sku in &world.catalogue.products {
            let url = format!("{}/api/v1/stock-items/{sku}/restock", world.url());
            let started = std::time::Instant::now();
            let sent = world
                .client
                .post(url)
                .json(&json!({"quantity": units}))
                .send()
                .await;
            let status = sent.map_or(0, |r| r.status().as_u16());
            samples.request("POST /stock-items/{sku}/restock", status, started.elapsed());
        }
    }
    samples
}
