//! The `reserva` command line, and `reserva reconcile`, whose exit code carries its answer.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use commands::CommandBus;
use commands::payment_gateway::{ResiliencePolicy, Resilient, StripeGateway};
use commands::reconcile::Discrepancy;
use sqlx::PgPool;

use crate::auth::{self, Role};
use crate::configuration::{AuthSettings, GatewaySettings, InstanceRole, Settings};

/// Exit code of `reserva reconcile` when it could not check (1 means it found discrepancies).
pub const EXIT_ERROR: u8 = 2;

/// Reserva: an event-sourced commerce backend (orders, bookings, stock, payments).
#[derive(Debug, Parser)]
#[command(name = "reserva", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (migrates first). Without DATABASE_URL a private PostgreSQL cluster
    /// is started under RESERVA_DATA_DIR (default .reserva/) and stopped on exit.
    Serve {
        /// What this instance runs: `api` (HTTP only), `workers` (projections, sagas,
        /// deadlines, publishing; HTTP for probes, metrics and webhooks only) or `all`.
        #[arg(long, env = "RESERVA_ROLE", value_enum, default_value_t = InstanceRole::All)]
        role: InstanceRole,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// Revert every migration instead (destroys the event store).
        #[arg(long)]
        revert_all: bool,
    },
    /// Rebuilds read models into shadow tables and swaps them in, without downtime.
    Rebuild {
        /// The projection to rebuild (see `reserva projections`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Rebuild every projection, side by side.
        #[arg(long)]
        all: bool,
    },
    /// Lists each projection with its position, lag and open dead letters; `verify` checks
    /// them against the event store.
    Projections {
        /// Without one: the list.
        #[command(subcommand)]
        command: Option<Projections>,
    },
    /// Events a projection could not handle.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
    /// What happened to an aggregate, its state at any moment, what one request caused, and
    /// whether anyone rewrote the store.
    #[command(subcommand)]
    Audit(Audit),
    /// Loads aggregates from their events with today's code and reports every event it
    /// cannot decode or apply and every stored snapshot that differs: run it before deploying
    /// a domain change. Exits 0 when clean, 1 on any problem, 2 when it could not check.
    Replay {
        /// The aggregate type (order, booking, stock_item, payment).
        #[arg(
            required_unless_present = "all",
            conflicts_with = "all",
            requires = "id"
        )]
        aggregate_type: Option<String>,
        /// The aggregate's id.
        id: Option<String>,
        /// Every aggregate in the store.
        #[arg(long)]
        all: bool,
        /// With --all: only report (without it, snapshots that differ are also deleted, so
        /// the next load folds the events and writes a right one).
        #[arg(long, requires = "all")]
        dry_run: bool,
    },
    /// Compares the payment provider's intents with Reserva's payments and prints every
    /// discrepancy. Exits 0 when they agree, 1 when they do not, 2 when it could not check.
    Reconcile,
    /// Registers demo products (DEMO-P-001…) and time slots (DEMO-S-001…) through the command
    /// bus. Safe to re-run: items that exist are left alone, so a second run writes nothing.
    Seed {
        /// Products to have.
        #[arg(long, default_value_t = 100, value_parser = crate::seed::parse_count)]
        products: u32,
        /// Experience time slots to have (four a day from tomorrow, UTC).
        #[arg(long, default_value_t = 20, value_parser = crate::seed::parse_count)]
        slots: u32,
    },
    /// Prints a bearer token signed with RESERVA_AUTH__JWT_SECRET (for development and
    /// operators); needs no database.
    Token {
        /// The subject: a customer id (UUID) for customers, any name for admins.
        #[arg(long)]
        sub: String,
        /// The role the token grants.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// How long it is valid: 3600, 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = crate::auth::parse_ttl)]
        ttl: Duration,
    },
}

/// `reserva token --role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Own orders and bookings only.
    Customer,
    /// Everything, including /admin.
    Admin,
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Self {
        match role {
            TokenRole::Customer => Role::Customer,
            TokenRole::Admin => Role::Admin,
        }
    }
}

/// `reserva token`: a token for `sub` with `role`, valid `ttl`, signed with the secret in
/// `RESERVA_AUTH__JWT_SECRET`.
///
/// # Errors
/// The secret is unset or too short, or the subject does not suit the role.
pub fn token(sub: &str, role: TokenRole, ttl: Duration) -> anyhow::Result<String> {
    let settings = AuthSettings::from_env()?
        .filter(|settings| settings.jwt_secret().is_some())
        .context(
            "RESERVA_AUTH__JWT_SECRET is not set: set it (at least 32 bytes) to the secret the \
         server verifies tokens with (reserva token mints HS256 tokens only; an identity \
         provider's tokens come from the provider)",
        )?;
    Ok(auth::mint(&settings, sub, role.into(), ttl)?)
}

/// `reserva projections …`.
#[derive(Debug, Subcommand)]
pub enum Projections {
    /// Folds a read model from the event store up to its checkpoint, in one snapshot, and
    /// compares it row by row with its table. Prints every missing, extra and differing row;
    /// exits 0 when they are equal, 1 when they differ, 2 when it could not check.
    Verify {
        /// The projection to verify (see `reserva projections`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Verify every projection, one after the other.
        #[arg(long)]
        all: bool,
        /// Rewrite exactly the rows that differ, in one transaction (the projection's runner
        /// waits meanwhile). The exit code still reports that they differed.
        #[arg(long)]
        repair: bool,
    },
}

/// `reserva audit …`.
#[derive(Debug, Subcommand)]
pub enum Audit {
    /// Every event of one aggregate: position, time, type, version, payload and metadata.
    Stream {
        /// The aggregate type (order, booking, stock_item, payment).
        aggregate_type: String,
        /// The aggregate's id.
        id: String,
        /// How to print.
        #[arg(long, value_enum, default_value_t)]
        format: crate::audit::Format,
    },
    /// The aggregate's state as it was at a time or a global position, replayed with
    /// today's code.
    AsOf {
        /// The aggregate type (order, booking, stock_item, payment).
        aggregate_type: String,
        /// The aggregate's id.
        id: String,
        /// An RFC 3339 time (2026-12-01T10:00:00Z) or a global position (12345).
        #[arg(long, value_parser = crate::audit::parse_as_of)]
        at: commands::audit::history::AsOf,
    },
    /// Every event in every aggregate one request caused, as a causation tree (request →
    /// order events → saga commands → stock and payment events → provider webhooks).
    Trace {
        /// The request's correlation id (its `X-Correlation-ID`).
        correlation_id: String,
        /// How to print.
        #[arg(long, value_enum, default_value_t)]
        format: crate::audit::Format,
    },
    /// Checks every event's hash chain and every signed checkpoint, and reports each
    /// modified, deleted, reordered or inserted event. Exits 0 when the store is as it was
    /// written, 1 on any finding, 2 when it could not check.
    Verify {
        /// Only the chains of aggregates with an event at or after this global position
        /// (checkpoints are always all checked).
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
    /// Signs a checkpoint of the chain heads now (the service also does, every
    /// RESERVA_AUDIT__CHECKPOINT_INTERVAL_SECS); needs RESERVA_AUDIT__KEY.
    Sign,
}

/// `reserva dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// Lists dead letters, newest first.
    List {
        /// Only this subscription's.
        #[arg(long)]
        subscription: Option<String>,
        /// Include resolved, skipped and superseded ones.
        #[arg(long)]
        all: bool,
    },
    /// Handles a parked event again (after fixing its cause), then the ones behind it.
    Retry {
        /// The dead letter's id.
        id: i64,
    },
    /// Drops a parked event and handles the ones behind it.
    Skip {
        /// The dead letter's id.
        id: i64,
    },
}

/// What `reserva reconcile` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The simulated gateway keeps its intents inside the running service: nothing to compare.
    NothingToCheck,
    /// Every discrepancy found; empty when the provider and Reserva agree.
    Checked(Vec<Discrepancy>),
}

impl Reconciled {
    /// The process exit code: 0 when nothing disagrees, 1 when something does.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Checked(found) if !found.is_empty() => 1,
            _ => 0,
        }
    }
}

/// `reserva reconcile`: compares the configured provider's intents with the Payment
/// aggregates in `pool` and writes each discrepancy on its own line, then a summary, to `out`.
/// Read-only on both sides.
///
/// # Errors
/// The Stripe client cannot be built, the provider cannot be listed, the event store cannot be
/// read, or `out` cannot be written.
pub async fn reconcile(
    settings: &Settings,
    pool: &PgPool,
    out: &mut impl Write,
) -> anyhow::Result<Reconciled> {
    let (secret_key, api_base) = match &settings.gateway {
        GatewaySettings::Simulated { .. } => {
            writeln!(
                out,
                "reconcile: the simulated gateway keeps its intents inside the running service, \
                 so there is nothing to reconcile from outside; nothing was checked"
            )?;
            return Ok(Reconciled::NothingToCheck);
        }
        GatewaySettings::Stripe {
            secret_key,
            api_base,
        } => (secret_key, api_base),
    };
    // Listing is one attempt over every page, so it gets longer than a payment call.
    let policy = ResiliencePolicy {
        attempt_timeout: Duration::from_secs(300),
        ..ResiliencePolicy::default()
    };
    let stripe = StripeGateway::new(secret_key, api_base.as_deref(), Duration::from_secs(30))
        .context("building the Stripe client")?;
    let gateway = Resilient::new(stripe, policy);
    let bus = CommandBus::new(pool.clone());
    let found = commands::reconcile::reconcile(&bus, &gateway)
        .await
        .context("reconciling with stripe")?;
    for discrepancy in &found {
        writeln!(out, "{discrepancy}")?;
    }
    match found.len() {
        0 => writeln!(out, "reconcile: stripe and Reserva agree; no discrepancies")?,
        1 => writeln!(out, "reconcile: 1 discrepancy between stripe and Reserva")?,
        n => writeln!(
            out,
            "reconcile: {n} discrepancies between stripe and Reserva"
        )?,
    }
    Ok(Reconciled::Checked(found))
}
