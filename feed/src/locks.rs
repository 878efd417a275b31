//! The advisory locks and connections that keep one runner per subscription.
//!
//! - **Run** (session level, on the runner's own connection): one runner per subscription
//!   across processes; a second waits in standby and takes over when the first one's
//!   connection goes away.
//! - **Swap** (transaction level): shared by every batch, exclusive for a rebuild's swap or a
//!   verify's repair, so neither happens in the middle of a batch.
//! - **Rebuild** (session level): two rebuilds never build the same shadow.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection as _, PgConnection, PgPool};

/// Advisory-lock keys of a subscription, derived from its name by the server.
pub mod keys {
    /// Held for the runner's whole life (session level).
    pub const RUN: &str = "reserva.subscription.run.";
    /// Shared by every batch, exclusive for a rebuild's swap (transaction level).
    pub const SWAP: &str = "reserva.subscription.swap.";
    /// Held by a rebuild for its whole life, so two never build the same shadow.
    pub const REBUILD: &str = "reserva.subscription.rebuild.";
}

/// A dedicated connection (outside the pool: it holds a session lock for its whole life)
/// named after its job in `pg_stat_activity`.
///
/// Every statement of a runner finds its rows through an index (a batch's rows by primary
/// key, the feed by `(transaction_id, global_position)`, dead letters by their open index),
/// so the connection never plans a sequential scan (`enable_seqscan = off`) and plans each
/// execution for its parameters (`plan_cache_mode = force_custom_plan`): a plan chosen while
/// a read model's table was young or never analyzed would otherwise scan the whole table on
/// every batch once it has grown.
///
/// # Errors
/// Any connection error.
pub async fn dedicated_connection(pool: &PgPool, job: &str) -> Result<PgConnection, sqlx::Error> {
    job_options(pool, job)
        .options([
            ("plan_cache_mode", "force_custom_plan"),
            ("enable_seqscan", "off"),
        ])
        .connect()
        .await
}

/// A dedicated connection for one long statement (a rebuild's or verify's stream): sqlx's
/// slow-statement warning would fire every time and say nothing.
///
/// # Errors
/// Any connection error.
pub async fn streaming_connection(pool: &PgPool, job: &str) -> Result<PgConnection, sqlx::Error> {
    job_options(pool, job)
        .disable_statement_logging()
        .connect()
        .await
}

fn job_options(pool: &PgPool, job: &str) -> PgConnectOptions {
    (*pool.connect_options())
        .clone()
        .application_name(&format!("reserva {job}"))
}

/// Tries to take a session advisory lock named `key` + `name` on `conn`.
///
/// # Errors
/// Any database error.
pub async fn try_session_lock(
    conn: &mut PgConnection,
    key: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("{key}{name}"))
        .fetch_one(&mut *conn)
        .await
}

/// Takes subscription `name`'s swap lock shared, until the transaction `conn` is in ends.
///
/// # Errors
/// Any database error.
pub async fn swap_shared(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
        .bind(format!("{}{name}", keys::SWAP))
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// Takes subscription `name`'s swap lock shared for the session of `conn` (outside any
/// transaction, until unlocked or disconnected): for work that must see one table across
/// several transactions, or must take the lock before its snapshot starts.
///
/// # Errors
/// Any database error.
pub async fn swap_shared_session(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock_shared(hashtextextended($1, 0))")
        .bind(format!("{}{name}", keys::SWAP))
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// Takes subscription `name`'s swap lock exclusively, until the transaction `conn` is in ends:
/// waits until its runner is between batches and keeps it there.
///
/// # Errors
/// Any database error.
pub async fn swap_exclusive(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{}{name}", keys::SWAP))
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// Hands a subscription back at once: unlocking explicitly rather than by disconnecting,
/// so the lock is free when this returns, not when the server notices the closed socket.
pub async fn release(mut conn: PgConnection) {
    if let Err(error) = sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut conn)
        .await
    {
        tracing::debug!(%error, "could not unlock; closing the connection releases the lock");
    }
    let _ = conn.close().await;
}
