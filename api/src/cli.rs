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
}
