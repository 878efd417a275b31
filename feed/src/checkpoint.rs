//! Where each subscription stands: its row in `subscriptions`, read and moved inside the
//! transaction that handles its events.

use sqlx::PgConnection;

use crate::Checkpoint;
use crate::locks;

/// Creates the subscription's row if it is missing.
///
/// # Errors
/// Any database error.
pub async fn ensure_row(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO subscriptions (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// The subscription's stored checkpoint (start if it has none).
///
/// # Errors
/// Any database error.
pub async fn stored(conn: &mut PgConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, global_position FROM subscriptions WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map_or(Checkpoint::START, |(t, g)| Checkpoint {
        transaction_id: t,
        global_position: g,
    }))
}

/// Moves the checkpoint (inside the caller's transaction, with the effects it covers).
///
/// # Errors
/// Any database error.
pub async fn store(
    conn: &mut PgConnection,
    name: &str,
    checkpoint: Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET transaction_id = $2, global_position = $3, updated_at = now() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.global_position)
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// The start of every handling transaction (`conn` must be inside one), in one statement:
/// takes the shared swap lock, so a rebuild cannot swap tables under the batch, and reads the
/// checkpoint the batch must start from.
///
/// The statement's snapshot is older than the lock when the lock had to wait for a swap, so a
/// plain read would return the checkpoint from before the swap; locking the row
/// (`FOR NO KEY UPDATE`, which the batch's [`store`] needs anyway) reads its latest committed
/// version instead. Returns `None` when the subscription has no row.
///
/// # Errors
/// Any database error.
pub async fn claim(conn: &mut PgConnection, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "WITH swap AS MATERIALIZED \
           (SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))) \
         SELECT s.transaction_id, s.global_position FROM swap, subscriptions s \
         WHERE s.name = $2 FOR NO KEY UPDATE OF s",
    )
    .bind(format!("{}{name}", locks::keys::SWAP))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(t, g)| Checkpoint {
        transaction_id: t,
        global_position: g,
    }))
}
