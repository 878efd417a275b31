//! Views that join two read models, read at one point of the feed.
//!
//! An order's view joins its row in `rm_orders` with its payment's in `rm_payments`; the two
//! models advance separately, so a plain join can show an order `COMPLETED` beside a payment
//! still `created`: a combination the store never held. Each row carries the position of the
//! last event folded into it, and each model its checkpoint, so one statement can tell whether
//! the pair existed together: the order row is the order's state at every point from its
//! last event to the orders checkpoint, the payment row likewise, and the two overlap exactly
//! when each model has passed the other row's last event. When they do not, the read waits
//! (bounded) for the model that is behind and reads again.

use sqlx::PgPool;
use sqlx::postgres::PgRow;
use std::time::Duration;
use tokio::time::Instant;

use crate::queries::QueryError;
use crate::wait::{self, WaitError};

/// Two joined models: the main one (`orders`, `bookings`) and the payments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Join {
    /// The main model's subscription.
    pub main: &'static str,
    /// Alias of the main table in the statement.
    pub main_alias: &'static str,
}

impl Join {
    /// Columns to append to a `SELECT … FROM <main> <main_alias> LEFT JOIN rm_payments p`:
    /// the position the payments model must reach for the pair to be consistent (`NULL` when
    /// it has), then the position the main model must reach.
    pub(crate) fn columns(&self) -> String {
        let m = self.main_alias;
        format!(
            "CASE WHEN {m}.payment_id IS NOT NULL AND NOT {} THEN {m}.position END, \
             CASE WHEN p.id IS NOT NULL AND NOT {} THEN p.position END",
            reached("payments", &format!("{m}.position")),
            reached(self.main, "p.position"),
        )
    }

    /// Runs `read` until what it read is consistent, waiting for the lagging model between
    /// tries, for at most `timeout`.
    ///
    /// # Errors
    /// [`QueryError::Behind`] after `timeout`, or the read's own error.
    pub(crate) async fn consistent<T, R, F>(
        &self,
        pool: &PgPool,
        timeout: Duration,
        mut read: F,
    ) -> Result<T, QueryError>
    where
        F: FnMut() -> R,
        R: Future<Output = Result<(T, Gap), QueryError>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let (value, gap) = read().await?;
            let waits = [("payments", gap.payments), (self.main, gap.main)];
            if waits.iter().all(|(_, position)| position.is_none()) {
                return Ok(value);
            }
            for (name, position) in waits {
                let Some(position) = position else { continue };
                let left = deadline.saturating_duration_since(Instant::now());
                match wait::until_reached(pool, None, name, position, left).await {
                    Ok(()) | Err(WaitError::Parked { .. }) => {}
                    Err(WaitError::TimedOut { .. }) => {
                        return Err(QueryError::Behind {
                            name,
                            position,
                            waited: timeout,
                        });
                    }
                    Err(WaitError::Database(error)) => return Err(error.into()),
                }
            }
        }
    }
}

/// What a read needs before its rows can be shown together: the highest position each model
/// must reach (`None`: it has).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gap {
    pub payments: Option<i64>,
    pub main: Option<i64>,
}

impl Gap {
    /// Adds one row's needs (the two columns of [`Join::columns`] at `first`, `first + 1`).
    pub(crate) fn add(&mut self, row: &PgRow, first: usize) -> Result<(), sqlx::Error> {
        use sqlx::Row;
        let payments: Option<i64> = row.try_get(first)?;
        let main: Option<i64> = row.try_get(first + 1)?;
        self.payments = self.payments.max(payments);
        self.main = self.main.max(main);
        Ok(())
    }
}

/// SQL: whether subscription `name` has handled the event at global position `position`
/// (compared in feed order, `(transaction_id, global_position)`).
fn reached(name: &str, position: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM subscriptions s JOIN events e ON e.global_position = {position} \
         WHERE s.name = '{name}' \
           AND (e.transaction_id::text::bigint, e.global_position) \
               <= (s.transaction_id, s.global_position))"
    )
}
