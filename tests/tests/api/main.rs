//! One test binary for every integration test (one link, parallel tests, one database each).

mod auth;
mod bad_input;
mod cancel;
mod concurrency;
mod crash;
mod dead_letters;
mod deadlines;
mod event_store;
mod failover;
mod feed;
mod gateway;
mod idempotency;
mod migrations;
mod openapi;
mod orders_and_bookings;
mod per_caller;
mod projections;
mod rate_limits;
mod read_models;
mod reconcile;
mod saga_concurrency;
mod sagas;
mod seed;
mod stock_items;
mod tracing;
mod webhooks;
