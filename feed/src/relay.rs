//! Wake-ups between processes that share one database.
//!
//! A `NOTIFY` inside the appending transaction would take PostgreSQL's global notify lock at
//! every commit and serialize all writers. Instead one task per process sends a coalesced
//! `NOTIFY` *after* its appends committed (at most one in flight, however many commits landed
//! meanwhile, naming the aggregate types they appended), and one `LISTEN`ing task turns other
//! processes' notices into local wake-ups of the subscriptions that want those types.
//! Neither is needed for correctness: subscriptions also poll.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::FeedSignal;

/// The channel appends are announced on.
pub const CHANNEL: &str = "reserva_events";

/// The channel rewrites of a subscription's rows behind its runner (a rebuild's swap, a
/// repair) are announced on, the payload naming the subscription: every process forgets the
/// rows it keeps in memory for it ([`FeedSignal::rewritten`]).
pub const REWRITES: &str = "reserva_rewrites";

/// Announces, inside the transaction that rewrites them, that subscription `name`'s rows were
/// rewritten: PostgreSQL delivers the notice when (and only if) it commits.
///
/// # Errors
/// The database's.
pub async fn announce_rewrite(
    conn: &mut sqlx::PgConnection,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(REWRITES)
        .bind(name)
        .execute(conn)
        .await
        .map(drop)
}

/// Between the announcing instance and the comma-separated aggregate types it appended, so
/// that other processes wake only the subscriptions that want them.
const SEPARATOR: char = '|';

/// Starts the announcing and the listening task on `tracker`; both end when `stop` is
/// cancelled (nothing they do needs finishing: subscriptions also poll).
pub fn spawn(
    pool: PgPool,
    signal: FeedSignal,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> [tokio::task::AbortHandle; 2] {
    let instance = Uuid::new_v4().to_string();
    let announce = announce(pool.clone(), signal.clone(), instance.clone());
    let listen = listen(pool, signal, instance);
    [
        tracker.spawn(until(stop.clone(), announce)).abort_handle(),
        tracker.spawn(until(stop.clone(), listen)).abort_handle(),
    ]
}

/// Runs `work` until `stop` is cancelled.
async fn until(stop: CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        () = work => {}
        () = stop.cancelled() => {}
    }
}

async fn announce(pool: PgPool, signal: FeedSignal, instance: String) {
    let mut appended = signal.subscribe_local();
    while appended.changed().await.is_ok() {
        let types: Vec<String> = signal.take_appended().into_iter().collect();
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{instance}{SEPARATOR}{}", types.join(",")))
            .execute(&pool)
            .await
        {
            tracing::debug!(%error, "could not announce appended events; others will poll");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn listen(pool: PgPool, signal: FeedSignal, instance: String) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::debug!(%error, "cannot LISTEN; relying on polling");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen_all([CHANNEL, REWRITES]).await {
            tracing::debug!(%error, "cannot LISTEN; relying on polling");
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        // Notices sent before we listened are lost: rows kept in memory may be stale.
        signal.rewritten(None);
        // `try_recv` reconnects by itself and says so with `None` (notices sent meanwhile are
        // lost); an error means it could not.
        while let Ok(notice) = listener.try_recv().await {
            let Some(notice) = notice else {
                signal.rewritten(None);
                signal.bump_remote(None);
                continue;
            };
            if notice.channel() == REWRITES {
                signal.rewritten(Some(notice.payload()));
                continue;
            }
            match notice.payload().split_once(SEPARATOR) {
                Some((from, _)) if from == instance => {}
                Some((_, types)) => {
                    let types: Vec<&str> = types.split(',').collect();
                    signal.bump_remote(Some(&types));
                }
                // An announcement without types (an older instance): wake everyone.
                None if notice.payload() != instance => signal.bump_remote(None),
                None => {}
            }
        }
    }
}
