//! Read-your-writes: wait until a projection has handled a given position.

use feed::{Checkpoint, FeedSignal, checkpoint};
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the stored checkpoint is read when no local runner reports progress (the
/// projection may run in another process).
const POLL: Duration = Duration::from_millis(25);

/// Why waiting stopped without success.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The projection did not reach the position in time (or no such event exists).
    #[error("projection {name} has not reached position {position} within {waited:?}")]
    TimedOut {
        /// The projection.
        name: String,
        /// The position asked for.
        position: i64,
        /// How long it waited.
        waited: Duration,
    },
    /// The projection passed the event but could not apply it: it is parked in
    /// `dead_letters` (or waits behind a parked event of its aggregate) until an operator
    /// retries or skips it. Answering with the row as it is would hide the write.
    #[error(
        "projection {name} could not apply the event at position {position}; it is parked in \
         dead letters until an operator retries or skips it"
    )]
    Parked {
        /// The projection.
        name: String,
        /// The position asked for.
        position: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// This process's runner of a projection: what it has committed, and the signal that wakes it.
#[derive(Debug, Clone)]
pub struct Local {
    /// The runner's progress ([`feed::SubscriptionHandle::progress`]).
    pub progress: watch::Receiver<Checkpoint>,
    /// The feed signal it listens to, to nudge it when the position is of a type it is not
    /// woken for (it would otherwise pass it only at its next poll).
    pub signal: FeedSignal,
}

/// Waits until projection `name` has handled the event at `position`, for at most `timeout`.
///
/// `local` is this process's runner, when it runs here: its progress wakes the waiter the
/// moment a batch commits. Otherwise the stored checkpoint decides.
///
/// # Errors
/// [`WaitError::TimedOut`], or a database error.
pub async fn until_reached(
    pool: &PgPool,
    local: Option<Local>,
    name: &str,
    position: i64,
    timeout: Duration,
) -> Result<(), WaitError> {
    if position <= 0 {
        // Before the first event (positions start at 1): every model has passed it, and no
        // event will ever sit at this position to wait for.
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let timed_out = || WaitError::TimedOut {
        name: name.to_owned(),
        position,
        waited: timeout,
    };
    // The event's place in the feed: a checkpoint compares as a pair, never by position alone.
    let target = loop {
        if let Some(target) = feed::checkpoint_of(&mut *pool.acquire().await?, position).await? {
            break target;
        }
        if Instant::now() + POLL > deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(POLL).await;
    };
    let mut local = local;
    loop {
        // A local runner that has started reports every commit; otherwise (standby, or no
        // runner here) the stored checkpoint is the only witness.
        let local_at = local.as_ref().map(|l| *l.progress.borrow());
        let reached = match local_at {
            Some(at) if at != Checkpoint::START => at >= target,
            _ => checkpoint::stored(&mut *pool.acquire().await?, name).await? >= target,
        };
        if reached {
            match held(pool, name, position).await? {
                Held::No => return Ok(()),
                Held::Parked => {
                    return Err(WaitError::Parked {
                        name: name.to_owned(),
                        position,
                    });
                }
                // Passed but set aside for a retry that may well succeed: keep waiting.
                Held::Retrying => {}
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        let nap = POLL.min(deadline - now);
        match local.as_mut() {
            Some(l) => {
                if !reached {
                    l.signal.nudge(name);
                }
                let _ = tokio::time::timeout(nap, l.progress.changed()).await;
            }
            None => tokio::time::sleep(nap).await,
        }
    }
}

/// Whether a projection that passed an event has applied it.
enum Held {
    /// Applied (or never held).
    No,
    /// Held behind a failing event of its aggregate that is still being retried.
    Retrying,
    /// Held behind an event parked for an operator.
    Parked,
}

/// Whether `name` holds the event at `position` in its dead letters, and behind what.
async fn held(pool: &PgPool, name: &str, position: i64) -> Result<Held, sqlx::Error> {
    let head: Option<String> = sqlx::query_scalar(
        "SELECT h.status FROM dead_letters d \
         JOIN dead_letters h ON h.subscription = d.subscription \
          AND h.aggregate_type = d.aggregate_type AND h.aggregate_id = d.aggregate_id \
          AND h.status IN ('retrying', 'parked') \
         WHERE d.subscription = $1 AND d.global_position = $2 \
           AND d.status IN ('retrying', 'parked', 'waiting') \
         ORDER BY h.status = 'parked' DESC LIMIT 1",
    )
    .bind(name)
    .bind(position)
    .fetch_optional(pool)
    .await?;
    Ok(match head.as_deref() {
        None => {
            // A `waiting` letter whose head was just resolved is still about to be applied.
            let open: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE subscription = $1 \
                   AND global_position = $2 AND status = 'waiting')",
            )
            .bind(name)
            .bind(position)
            .fetch_one(pool)
            .await?;
            if open { Held::Retrying } else { Held::No }
        }
        Some("parked") => Held::Parked,
        Some(_) => Held::Retrying,
    })
}
