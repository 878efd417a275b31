//! One test binary for every integration test (one link, parallel tests, one database each).

mod bad_input;
mod concurrency;
mod event_store;
mod migrations;
mod orders_and_bookings;
mod stock_items;
