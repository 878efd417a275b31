//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo only rebuilds a crate when
//! its own sources change: without this, a new migration file is silently left out of the
//! binary until something else in `commands` changes (sqlx documents this build script).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
