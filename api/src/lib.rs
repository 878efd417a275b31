//! The `reserva` binary's library: HTTP API, CLI, configuration and wiring.
//!
//! # Layout
//! - [`cli`]: subcommands; [`configuration`]: typed settings from the environment.
//! - [`startup`]: builds the HTTP server on a pool it is given (tests pass their own), with
//!   [`workers`], the background work beside it.
//! - [`routes`]: handlers; [`extract`] and [`validation`]: the edge; [`problem`]: the single
//!   mapping from failures to `application/problem+json`; [`correlation`]: correlation ids.
//! - [`edge`]: CORS, security headers and compression for browsers.
//! - [`rate_limit`]: per-client request budgets; [`idempotency`]: `Idempotency-Key` replays.
//! - [`views`]: the wire types of every answer; [`openapi`]: the OpenAPI document
//!   (`/openapi.json`) and Swagger UI (`/docs`).
//! - [`postgres`]: the private PostgreSQL cluster used when no `DATABASE_URL` is set.
//! - [`telemetry`]: structured logs and W3C traces (OTLP export when configured); [`metrics`]: the Prometheus recorder.
//! - [`operate`]: the operator subcommands (rebuild, projections and their verify, dead
//!   letters); [`rebuilds`]: rebuilds started over HTTP; [`verifier`]: the periodic verify;
//!   [`seed`]: demo data.
//! - [`integration`]: integration events published to NATS JetStream.
//! - [`live`]: server-sent events of orders, bookings and stock items as they change.
//! - [`outbound`]: outbound webhooks (signed deliveries of integration events to registered
//!   endpoints, retried, parked when dead).
//! - [`audit`]: the `audit` and `replay` subcommands; [`checkpointer`]: the periodic signing of
//!   audit checkpoints.
//!
//! # Rules this crate keeps
//! The only crate that knows HTTP; everything below it is reached through `commands`.
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod checkpointer;
pub mod cli;
pub mod configuration;
pub mod correlation;
pub mod database;
pub mod edge;
pub mod extract;
pub mod idempotency;
pub mod integration;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod operate;
pub mod outbound;
pub mod postgres;
pub mod problem;
pub mod rate_limit;
pub mod rebuilds;
pub mod routes;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod validation;
pub mod verifier;
pub mod views;
pub mod workers;
