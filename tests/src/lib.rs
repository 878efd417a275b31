//! Black-box test harness: a real PostgreSQL (one fresh database per test) and the real HTTP
//! server on a free port.
//!
//! With `DATABASE_URL` set, tests create their databases on that server; without it a private
//! cluster is started once per test process under `.reserva/test-cluster` and stopped when the
//! process exits. `TEST_LOG=1` prints the service's logs.
//!
//! [`fake_stripe`]: a stateful Stripe stand-in for the real async-stripe client.
//! [`fake_identity_provider`]: a JWKS endpoint and the keys to sign its tokens with.
//! [`fake_receiver`]: a scripted webhook receiver for the outbound webhooks' real client.
//!
//! # Layout
//!
//! Everything is re-exported here, so tests name it `tests::…` whatever module holds it.
//!
//! - `database`: the test server (private cluster or `DATABASE_URL`), [`TestDatabase`] and
//!   [`fresh_database`]; [`counting_server`], a cluster of its own that counts statements.
//! - `app`: [`TestApp`] and the `spawn_app*` functions; restarts and graceful shutdowns.
//! - `requests`: [`TestApp`]'s HTTP helpers (plain, keyed, raw, signed webhooks, bearer
//!   tokens) and [`register_product_command`].
//! - `store`: [`StoredEvent`] and direct reads of the database behind a [`TestApp`] (events,
//!   head, snapshots, advisory locks, one deadline run).
//! - `waiting`: [`eventually`], [`feed_end`], [`wait_until_caught_up`] and
//!   [`TestApp::catch_up`].
//! - `fake_stripe`: [`FakeStripe`] (see above).
//! - `fake_identity_provider`: [`FakeIdentityProvider`] and [`TestKey`] (see above).
//! - `fake_receiver`: [`FakeReceiver`] (see above).
//! - `process`: [`ServeProcess`], the real `reserva serve` as a child process, and
//!   [`run_reserva`] for one command run to its end.

mod app;
mod database;
pub mod fake_identity_provider;
pub mod fake_receiver;
pub mod fake_stripe;
mod process;
mod requests;
mod store;
mod waiting;

pub use app::{
    JWT_SECRET, TestApp, WEBHOOK_SECRET, spawn_app, spawn_app_on, spawn_app_on_database,
    spawn_app_with, spawn_app_with_auth, spawn_app_without_sagas,
};
pub use database::{TestDatabase, counting_server, fresh_database, fresh_database_on, server};
pub use fake_identity_provider::{FakeIdentityProvider, TestKey};
pub use fake_receiver::FakeReceiver;
pub use fake_stripe::FakeStripe;
pub use process::{ServeProcess, run_reserva};
pub use requests::register_product_command;
pub use store::StoredEvent;
pub use waiting::{eventually, feed_end, stored_checkpoint, wait_until_caught_up};
