//! One test binary for every integration test (one link, parallel tests, one database each).

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
mod health;
mod metrics;
mod migrations;
mod orders_and_bookings;
mod projections;
mod read_models;
mod reconcile;
mod saga_concurrency;
mod sagas;
mod shutdown;
mod stock_items;
mod webhooks;
