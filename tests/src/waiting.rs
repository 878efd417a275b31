//! Waiting without bare sleeps: [`eventually`], the end of the feed, and catching up with it.

use crate::TestApp;
use sqlx::PgPool;
use std::time::Duration;

/// Polls `check` every 20 ms until it answers `Some`, for at most 20 s; panics naming `what`
/// otherwise. Background work (subscriptions, projections) is awaited with this, never with a
/// bare sleep.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 20 s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last stored event in feed order, `(transaction_id, global_position)`, whether or not the
/// feed may hand it out yet. Once every writer has committed, a subscription whose checkpoint
/// reached this has handled everything. (The highest `global_position` alone is not enough: a
/// later transaction can hold a lower position.)
pub async fn feed_end(pool: &PgPool) -> feed::Checkpoint {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .expect("read the end of the feed");
    row.map_or(
        feed::Checkpoint::START,
        |(transaction_id, global_position)| feed::Checkpoint {
            transaction_id,
            global_position,
        },
    )
}

/// The checkpoint subscription `name` has stored.
pub async fn stored_checkpoint(pool: &PgPool, name: &str) -> feed::Checkpoint {
    let mut conn = pool.acquire().await.expect("connection");
    feed::checkpoint::stored(&mut conn, name)
        .await
        .expect("stored checkpoint")
}

/// Waits (bounded) until subscription `name` has stored a checkpoint at or past
/// [`feed_end`] as it is now; returns that end.
pub async fn wait_until_caught_up(pool: &PgPool, name: &str) -> feed::Checkpoint {
    let end = feed_end(pool).await;
    eventually(&format!("subscription {name} to reach {end}"), || async {
        (stored_checkpoint(pool, name).await >= end).then_some(())
    })
    .await;
    end
}

/// Longest [`TestApp::catch_up`] waits for one projection.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

impl TestApp {
    /// Waits until every projection has handled every event committed so far, and returns the
    /// global position of the last of them in feed order (0 when there are none). Panics
    /// naming the projection that did not get there in time.
    ///
    /// The target is the last event in feed order, `(transaction_id, global_position)`, not
    /// [`TestApp::head`]: under concurrent writers a transaction with a higher id can hold a
    /// lower position, and a checkpoint past the highest position may not have reached it.
    pub async fn catch_up(&self) -> i64 {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .expect("the last event in feed order");
        let Some(last) = last else {
            return 0;
        };
        for name in projections::catalog::names() {
            projections::wait::until_reached(&self.pool, None, name, last, CATCH_UP_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("projection {name} did not catch up: {e}"));
        }
        last
    }
}
