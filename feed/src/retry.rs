//! Trying held events again: retries that fell due, operators' requests, and chains an
//! interrupted drain left without a head. Only the runner holding the subscription's lock
//! (or `serve_if_unattended`, when none does) may do it: it writes the read model.
//!
//! Each event of a chain is tried in its own transaction through the same [`attempt`] path
//! as the runner's batches. A failure never sleeps: the head is rescheduled with back-off and
//! the runner goes back to the feed, so one bad aggregate never holds up the others.

use sqlx::{Connection as _, PgConnection, PgPool};
use std::time::Duration;

use crate::attempt::attempt;
use crate::dead_letters::{AggregateKey, OPEN};
use crate::handler::{Handler, RunnerError};
use crate::options::SubscriptionOptions;
use crate::{locks, read};

/// What a round of [`serve`] did.
#[derive(Debug, Default)]
pub struct Served {
    /// Aggregates whose chain emptied: their events flow again.
    pub emptied: Vec<AggregateKey>,
    /// Aggregates whose chain is still held.
    pub parked: Vec<AggregateKey>,
    /// When the next scheduled retry falls due, if any.
    pub next_retry: Option<Duration>,
}

/// Carries out every pending request, due retry and headless chain of `handler`'s
/// subscription.
///
/// # Errors
/// [`RunnerError`] when the connection or a handler's dependency fails.
pub async fn serve(
    conn: &mut PgConnection,
    handler: &dyn Handler,
    options: &SubscriptionOptions,
) -> Result<Served, RunnerError> {
    let name = handler.name();
    // Aggregates someone asked about, heads whose retry is due, and chains with no head
    // left (a drain that resolved or skipped the head and then died before the rest).
    let due: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT aggregate_type, aggregate_id FROM dead_letters d \
         WHERE subscription = $1 AND status IN ('retrying', 'parked', 'waiting') \
           AND (requested_action IS NOT NULL \
                OR (status = 'retrying' AND next_attempt_at <= now()) \
                OR NOT EXISTS ( \
                SELECT 1 FROM dead_letters p \
                 WHERE p.subscription = d.subscription AND p.aggregate_type = d.aggregate_type \
                   AND p.aggregate_id = d.aggregate_id AND p.status IN ('retrying', 'parked')))",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let mut served = Served::default();
    for (aggregate_type, aggregate_id) in due {
        let key = AggregateKey {
            aggregate_type,
            aggregate_id,
        };
        if drain(conn, handler, &key, options).await? {
            served.emptied.push(key);
        } else {
            served.parked.push(key);
        }
    }
    let next: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())::float8 FROM dead_letters \
         WHERE subscription = $1 AND status = 'retrying'",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    served.next_retry = next.map(|seconds| Duration::from_secs_f64(seconds.max(0.0)));
    Ok(served)
}

/// One letter of a chain.
#[derive(sqlx::FromRow)]
struct Letter {
    id: i64,
    global_position: i64,
    requested_action: Option<String>,
    attempts: i32,
}

/// Works through one aggregate's chain in order, one transaction per event, until it empties
/// (`true`) or an event fails again (`false`: rescheduled, or parked once out of tries).
async fn drain(
    conn: &mut PgConnection,
    handler: &dyn Handler,
    key: &AggregateKey,
    options: &SubscriptionOptions,
) -> Result<bool, RunnerError> {
    let name = handler.name();
    let chain: Vec<Letter> = sqlx::query_as(
        "SELECT id, global_position, requested_action, attempts FROM dead_letters \
         WHERE subscription = $1 AND aggregate_type = $2 AND aggregate_id = $3 \
           AND status = ANY($4) \
         ORDER BY transaction_id, global_position",
    )
    .bind(name)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .bind(&OPEN[..])
    .fetch_all(&mut *conn)
    .await?;
    let request = chain.iter().find_map(|l| l.requested_action.as_deref());
    for (index, letter) in chain.iter().enumerate() {
        if index == 0 && request == Some("skip") {
            close(conn, letter.id, "skipped", 0).await?;
            continue;
        }
        let Some(event) = read::read_positions(conn, &[letter.global_position])
            .await?
            .pop()
        else {
            close(conn, letter.id, "skipped", 0).await?;
            continue;
        };
        let mut tx = conn.begin().await?;
        locks::swap_shared(&mut tx, name).await?;
        match attempt(&mut tx, handler, std::slice::from_ref(&event)).await {
            Ok(()) => {
                close(&mut tx, letter.id, "resolved", 1).await?;
                tx.commit().await?;
            }
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => {
                tx.rollback().await?;
                let attempts = u32::try_from(letter.attempts).unwrap_or(0) + 1;
                // An operator's retry is one more try; the automatic ones stop at the limit.
                let give_up = request.is_some() || attempts >= options.max_attempts;
                if give_up {
                    tracing::error!(subscription = %name, position = letter.global_position, attempts, %error, "event parked in dead_letters until an operator retries or skips it");
                    metrics::counter!("reserva_dead_letters_parked_total", "subscription" => name.to_owned()).increment(1);
                } else {
                    tracing::warn!(subscription = %name, position = letter.global_position, attempts, %error, "event failed again; retrying later");
                }
                let delay = (!give_up).then(|| options.backoff().delay(attempts));
                reschedule(conn, letter.id, &error.to_string(), delay).await?;
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Closes a letter as `status` after `tries` more tries (its own statement, or inside the
/// caller's transaction).
async fn close(
    conn: &mut PgConnection,
    id: i64,
    status: &str,
    tries: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = $2, requested_action = NULL, next_attempt_at = NULL, \
            attempts = attempts + $3, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(tries)
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Makes a letter the failed head of its chain after one more failed try: `retrying` in
/// `delay`, or `parked` for an operator when `delay` is `None`.
async fn reschedule(
    conn: &mut PgConnection,
    id: i64,
    error: &str,
    delay: Option<Duration>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = CASE WHEN $3::float8 IS NULL THEN 'parked' ELSE 'retrying' END, \
            next_attempt_at = now() + make_interval(secs => $3::float8), \
            requested_action = NULL, attempts = attempts + 1, error = $2, updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(delay.map(|d| d.as_secs_f64()))
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// Carries out pending requests and due retries here and now when no runner holds the
/// subscription (the service is not running); returns `false`, doing nothing, when one does —
/// it will.
///
/// # Errors
/// [`RunnerError`].
pub async fn serve_if_unattended(
    pool: &PgPool,
    handler: &dyn Handler,
    options: &SubscriptionOptions,
) -> Result<bool, RunnerError> {
    let name = handler.name();
    let mut conn = locks::dedicated_connection(pool, &format!("dead letters {name}")).await?;
    if !locks::try_session_lock(&mut conn, locks::keys::RUN, name).await? {
        return Ok(false);
    }
    serve(&mut conn, handler, options).await?;
    locks::release(conn).await;
    Ok(true)
}
