//! `reserva seed`: demo products and experience time slots, so a fresh install has something to
//! order and book.
//!
//! Items are registered through the [`CommandBus`] with the same `Register` command that
//! `POST /api/v1/stock-items` issues, so they are ordinary stock items with ordinary events.
//! The catalogue is computed from each item's number (no randomness): `DEMO-P-001` is always the
//! same product. Re-running is safe: an item that already exists is counted and left alone, so
//! a second run writes no event, and a larger run only adds the items the first one lacked.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use commands::{CommandBus, CommandError, CommandMetadata};
use domain::stock_item::{StockItem, StockItemCommand, StockItemError, StockKind};
use domain::{Currency, Money, Sku};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgPool;

use crate::configuration::Settings;

/// The `actor` stored on every event the seed writes, so demo data can be told apart.
pub const ACTOR: &str = "system:seed";

/// Largest `--products` / `--slots`: SKUs keep three digits up to 999 and the run stays short.
pub const MAX_ITEMS: u32 = 10_000;

/// Registrations in flight at once (each item is its own aggregate, so they never conflict).
const CONCURRENCY: usize = 8;

/// Slots start at these UTC times, four a day, from the plan's first day on.
const SLOT_TIMES: [(u32, u32); 4] = [(15, 0), (17, 30), (20, 0), (22, 30)];

const MATERIALS: [&str; 10] = [
    "Clay", "Talavera", "Copper", "Woven", "Oak", "Glass", "Cotton", "Leather", "Silver", "Palm",
];
const OBJECTS: [&str; 10] = [
    "mug",
    "plate",
    "bowl",
    "vase",
    "basket",
    "lamp",
    "tray",
    "bag",
    "candle holder",
    "pitcher",
];
const EXPERIENCES: [&str; 8] = [
    "Centro Histórico walking tour",
    "Xochimilco trajinera ride",
    "Mole cooking class",
    "Teotihuacan sunrise hike",
    "Mezcal tasting",
    "Lucha libre night",
    "Coyoacán food tour",
    "Alebrije painting workshop",
];

/// How much demo data to write, and from which day the time slots start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedPlan {
    /// Products `DEMO-P-001` … .
    pub products: u32,
    /// Time slots `DEMO-S-001` … .
    pub slots: u32,
    /// The day of the first slots (four a day after that).
    pub first_day: NaiveDate,
}

impl SeedPlan {
    /// A plan whose slots start tomorrow (UTC), so every slot is bookable when seeded.
    pub fn starting_tomorrow(products: u32, slots: u32) -> Self {
        let today = Utc::now().date_naive();
        Self {
            products,
            slots,
            first_day: today.checked_add_days(Days::new(1)).unwrap_or(today),
        }
    }

    /// Every item of the plan, products first, in SKU order.
    ///
    /// # Errors
    /// [`SeedError::TooMany`] when a count is above [`MAX_ITEMS`].
    pub fn items(&self) -> Result<Vec<DemoItem>, SeedError> {
        for (what, count) in [("products", self.products), ("slots", self.slots)] {
            if count > MAX_ITEMS {
                return Err(SeedError::TooMany { what, count });
            }
        }
        let products = (1..=self.products).map(product);
        let slots = (1..=self.slots).map(|n| slot(n, self.first_day));
        Ok(products.chain(slots).collect())
    }
}

/// One demo stock item and the command that registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoItem {
    /// Its SKU (also the aggregate id).
    pub sku: Sku,
    /// The `Register` command, exactly as `POST /api/v1/stock-items` would build it.
    pub command: StockItemCommand,
}

impl DemoItem {
    fn is_slot(&self) -> bool {
        matches!(
            self.command,
            StockItemCommand::Register {
                kind: StockKind::TimeSlot { .. },
                ..
            }
        )
    }
}

/// What a run did. `*_registered` count the items this run wrote, `*_existing` the ones it
/// found already there (and left alone).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    /// Products this run registered.
    pub products_registered: u32,
    /// Products that already existed.
    pub products_existing: u32,
    /// Time slots this run registered.
    pub slots_registered: u32,
    /// Time slots that already existed.
    pub slots_existing: u32,
}

/// Why seeding stopped (items registered before the failure stay registered; re-run to finish).
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A count above [`MAX_ITEMS`].
    #[error("--{what} {count} is more than the {MAX_ITEMS} a demo needs")]
    TooMany {
        /// `products` or `slots`.
        what: &'static str,
        /// The count asked for.
        count: u32,
    },
    /// The command bus could not register an item.
    #[error("registering {sku}")]
    Register {
        /// The item.
        sku: String,
        /// What the bus answered.
        #[source]
        source: CommandError<StockItemError>,
    },
}

/// Whether to draw a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// On stderr, unless stderr is not a terminal or `CI` is set.
    Terminal,
    /// Never (tests, embedding).
    Hidden,
}

/// Registers every item of `plan` that does not exist yet through `bus`.
///
/// Idempotent: an existing SKU (whatever it holds) is counted as existing and nothing is
/// written for it, so running the same plan twice writes no event the second time.
///
/// # Errors
/// [`SeedError::TooMany`] before anything is written; [`SeedError::Register`] when the store
/// fails (the items registered until then stay; a re-run completes the rest).
pub async fn seed(
    bus: &CommandBus,
    plan: &SeedPlan,
    progress: Progress,
) -> Result<SeedReport, SeedError> {
    let items = plan.items()?;
    let bar = progress_bar(items.len() as u64, progress);
    let metadata = CommandMetadata::system(ACTOR);
    let mut outcomes = futures::stream::iter(items)
        .map(|item| {
            let (bus, metadata, bar) = (bus, &metadata, &bar);
            async move {
                let sku = item.sku.as_str();
                let result = bus
                    .execute::<StockItem>(sku, item.command.clone(), metadata)
                    .await;
                bar.inc(1);
                let registered = match result {
                    Ok(_) => true,
                    Err(CommandError::Rejected(StockItemError::AlreadyRegistered)) => false,
                    Err(source) => {
                        return Err(SeedError::Register {
                            sku: sku.to_owned(),
                            source,
                        });
                    }
                };
                Ok((item.is_slot(), registered))
            }
        })
        .buffer_unordered(CONCURRENCY);
    let mut report = SeedReport::default();
    while let Some(outcome) = outcomes.next().await {
        let (is_slot, registered) = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                bar.abandon_with_message("failed");
                return Err(error);
            }
        };
        let count = match (is_slot, registered) {
            (false, true) => &mut report.products_registered,
            (false, false) => &mut report.products_existing,
            (true, true) => &mut report.slots_registered,
            (true, false) => &mut report.slots_existing,
        };
        *count += 1;
    }
    bar.finish_and_clear();
    Ok(report)
}

fn progress_bar(len: u64, progress: Progress) -> ProgressBar {
    let visible = progress == Progress::Terminal
        && std::env::var_os("CI").is_none()
        && std::io::stderr().is_terminal();
    if !visible {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "seeding [{bar:30}] {human_pos}/{human_len} items, {elapsed} elapsed, ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `reserva seed --products N --slots M`: seeds into `pool` (already migrated) with a progress
/// bar, then writes what it did and a few commands to try to `out`.
///
/// # Errors
/// Seeding failed (see [`seed`]) or `out` could not be written.
pub async fn run(
    settings: &Settings,
    pool: &PgPool,
    products: u32,
    slots: u32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let plan = SeedPlan::starting_tomorrow(products, slots);
    let bus = CommandBus::new(pool.clone());
    let report = seed(&bus, &plan, Progress::Terminal).await?;
    writeln!(
        out,
        "products: {} registered, {} already there; slots: {} registered, {} already there",
        report.products_registered,
        report.products_existing,
        report.slots_registered,
        report.slots_existing
    )?;
    let host = match settings.http_host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1",
        host => host,
    };
    let base_url = format!("http://{host}:{}", settings.http_port);
    write!(out, "{}", examples(&plan, &base_url))?;
    Ok(())
}

/// Parses `--products` / `--slots`: a whole number from 0 to [`MAX_ITEMS`].
///
/// # Errors
/// The text is not such a number (clap shows the message).
pub fn parse_count(raw: &str) -> Result<u32, String> {
    match raw.parse::<u32>() {
        Ok(n) if n <= MAX_ITEMS => Ok(n),
        _ => Err(format!("expected a whole number from 0 to {MAX_ITEMS}")),
    }
}

/// A few commands to try the seeded data with, against the service at `base_url`.
pub fn examples(plan: &SeedPlan, base_url: &str) -> String {
    let customer = "7f0c1a9e-3a0e-4a47-9f39-0a3f0b8f9d11";
    let mut out = format!(
        "Try it (with `reserva serve` running):\n  \
         curl -s '{base_url}/api/v1/stock-items?per_page=5'\n"
    );
    if plan.products > 0 {
        out.push_str(&format!(
            "  curl -s -XPOST {base_url}/api/v1/orders -H 'content-type: application/json' \\\n    \
             -d '{{\"customer_id\":\"{customer}\",\"items\":[{{\"sku\":\"{}\",\"quantity\":2}}]}}'\n",
            product_sku(1)
        ));
    }
    if plan.slots > 0 {
        out.push_str(&format!(
            "  curl -s '{base_url}/api/v1/stock-items?kind=time_slot&per_page=5'\n  \
             curl -s -XPOST {base_url}/api/v1/bookings -H 'content-type: application/json' \\\n    \
             -d '{{\"customer_id\":\"{customer}\",\"slot_sku\":\"{}\",\"guests\":2}}'\n",
            slot_sku(1)
        ));
    }
    out.push_str(&format!(
        "  curl -s '{base_url}/api/v1/orders?customer={customer}'   # the order's id, then GET /api/v1/orders/<id>\n\
         With auth on, add -H \"authorization: Bearer $(reserva token --sub {customer} --role customer)\"\n"
    ));
    out
}

fn product_sku(n: u32) -> String {
    format!("DEMO-P-{n:03}")
}

fn slot_sku(n: u32) -> String {
    format!("DEMO-S-{n:03}")
}

/// Product `n`: 5–50 units, a threshold of about a fifth of that, whole-peso prices (minor
/// units ending in 00, which the simulated gateway always pays).
fn product(n: u32) -> DemoItem {
    let i = n - 1;
    let name = format!(
        "{} {}",
        MATERIALS[(i % 10) as usize],
        OBJECTS[((i / 10 + i) % 10) as usize]
    );
    let quantity = 5 + (i * 17) % 46;
    let pesos = 49 + (i * 73) % 1_450;
    registration(
        product_sku(n),
        name,
        StockKind::Product,
        quantity,
        (quantity / 5).max(2),
        i64::from(pesos) * 100,
    )
}

/// Slot `n`: four a day from `first_day` on, 8–20 seats, 350–1,200 pesos a seat.
fn slot(n: u32, first_day: NaiveDate) -> DemoItem {
    let i = n - 1;
    let day = first_day
        .checked_add_days(Days::new(u64::from(i) / 4))
        .unwrap_or(first_day);
    let (hour, minute) = SLOT_TIMES[(i % 4) as usize];
    let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN);
    let starts_at = DateTime::<Utc>::from_naive_utc_and_offset(day.and_time(time), Utc);
    let seats = 8 + (i * 5) % 13;
    let pesos = 350 + (i * 150) % 900;
    registration(
        slot_sku(n),
        EXPERIENCES[(i % 8) as usize].to_owned(),
        StockKind::TimeSlot { starts_at },
        seats,
        2,
        i64::from(pesos) * 100,
    )
}

fn registration(
    sku: String,
    name: String,
    kind: StockKind,
    quantity: u32,
    low_stock_threshold: u32,
    centavos: i64,
) -> DemoItem {
    // Both are built from constants that satisfy their rules: `DEMO-X-nnn` is a valid SKU, MXN
    // an active currency and the amount positive; the fallbacks are unreachable.
    let sku = Sku::parse(&sku).unwrap_or_else(|_| unreachable!("demo SKUs are valid: {sku}"));
    let mxn = Currency::parse("MXN").unwrap_or_else(|_| unreachable!("MXN is a currency"));
    let unit_price = Money::new(centavos, mxn).unwrap_or_else(|_| Money::zero(mxn));
    DemoItem {
        command: StockItemCommand::Register {
            sku: sku.clone(),
            name,
            kind,
            quantity,
            low_stock_threshold,
            unit_price,
        },
        sku,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan(products: u32, slots: u32) -> SeedPlan {
        SeedPlan {
            products,
            slots,
            first_day: NaiveDate::from_ymd_opt(2030, 3, 1).unwrap_or_default(),
        }
    }

    #[test]
    fn the_catalogue_is_the_same_on_every_run_and_a_larger_plan_extends_it() {
        let a = plan(30, 8).items().unwrap();
        assert_eq!(a, plan(30, 8).items().unwrap());
        assert_eq!(a.len(), 38);
        assert_eq!(plan(40, 8).items().unwrap()[..30], a[..30]);
        assert_eq!(a[0].sku.as_str(), "DEMO-P-001");
        assert_eq!(a[30].sku.as_str(), "DEMO-S-001");
    }

    #[test]
    fn the_seed_subcommand_takes_counts_and_refuses_absurd_ones() {
        let cli =
            Cli::try_parse_from(["reserva", "seed", "--products", "100", "--slots", "20"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Seed {
                products: 100,
                slots: 20
            }
        ));
        assert!(Cli::try_parse_from(["reserva", "seed", "--products", "10001"]).is_err());
        assert!(Cli::try_parse_from(["reserva", "seed", "--slots", "-1"]).is_err());
        assert!(matches!(
            plan(MAX_ITEMS + 1, 0).items(),
            Err(SeedError::TooMany { .. })
        ));
    }

    #[test]
    fn the_examples_name_seeded_items() {
        let text = examples(&plan(1, 1), "http://127.0.0.1:8080");
        assert!(text.contains("\"sku\":\"DEMO-P-001\""), "{text}");
        assert!(text.contains("\"slot_sku\":\"DEMO-S-001\""), "{text}");
        assert!(!examples(&plan(0, 0), "http://x").contains("/bookings"));
    }
}
