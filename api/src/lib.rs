//! The `reserva` binary's library: HTTP API, CLI, configuration and wiring.
//!
//! # Layout
//! - [`cli`]: subcommands; [`configuration`]: typed settings from the environment.
//! - [`startup`]: builds the HTTP server on a pool it is given (tests pass their own).
//! - [`routes`]: handlers; [`extract`] and [`validation`]: the edge; [`problem`]: the single
//!   mapping from failures to `application/problem+json`; [`correlation`]: correlation ids.
//! - [`postgres`]: the private PostgreSQL cluster used when no `DATABASE_URL` is set.
//! - [`telemetry`]: structured logs.
//!
//! # Rules this crate keeps
//! The only crate that knows HTTP; everything below it is reached through `commands`.
#![warn(missing_docs)]

pub mod cli;
pub mod configuration;
pub mod correlation;
pub mod database;
pub mod extract;
pub mod postgres;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod validation;
