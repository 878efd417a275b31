//! The `reserva` command line.

use clap::{Parser, Subcommand};

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
    Serve,
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
    /// Lists each projection with its position, lag and open dead letters.
    Projections,
    /// Events a projection could not handle.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
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
