//! Reading the feed: every committed event exactly once, in one global order.
//!
//! `global_position` is taken from an identity before commit, so a transaction that commits
//! late can hold a lower position than events a reader has already passed. The feed therefore
//! orders by `(transaction_id, global_position)` and never reads at or beyond the oldest
//! transaction still in flight (`pg_snapshot_xmin`): everything below it has either committed
//! or aborted, so nothing below a checkpoint can appear later.

use futures::{Stream, TryStreamExt};
use sqlx::{PgConnection, Row as _};

use crate::{Checkpoint, FeedEvent};

/// Columns of [`FeedEvent`], in `from_row` order. sqlx 0.8 has no `xid8`, hence the casts.
/// A macro so that constant queries can `concat!` it.
macro_rules! columns {
    () => {
        "transaction_id::text::bigint, global_position, aggregate_type, aggregate_id, sequence, \
         event_type, payload::text, metadata::text, recorded_at, event_version"
    };
}
const COLUMNS: &str = columns!();

/// The rebuild's bulk read: everything below the bound, in feed order.
const STREAM_ALL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM events WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
       AND (cardinality($1::text[]) = 0 OR aggregate_type = ANY($1)) \
     ORDER BY events.transaction_id, events.global_position"
);

/// Everything up to a checkpoint, in feed order.
const STREAM_UNTIL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM events WHERE (transaction_id, global_position) <= ($1::text::xid8, $2) \
       AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)) \
     ORDER BY events.transaction_id, events.global_position"
);

/// The next events after `after`, up to the oldest transaction in flight.
///
/// `aggregate_types` filters the feed (empty = every type); a filtered reader still advances
/// past what it skipped once it handles a later event, and a skipped event is never one it
/// needs.
///
/// # Errors
/// Any database error.
pub async fn read_after(
    conn: &mut PgConnection,
    after: Checkpoint,
    aggregate_types: &[String],
    limit: i64,
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
           AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)) \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(aggregate_types)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(FeedEvent::from_row).collect()
}

/// What a runner's look at the feed found.
#[derive(Debug)]
pub struct NextBatch {
    /// The next events after the checkpoint, up to the oldest transaction in flight.
    pub events: Vec<FeedEvent>,
    /// Committed events wait behind an open transaction (see [`held_back`]), as seen by the
    /// same snapshot as `events`.
    pub held_back: bool,
}

/// A runner's whole look at the feed in one statement, outside any transaction: the batch of
/// [`read_after`] and the answer of [`held_back`] from one snapshot.
///
/// One snapshot answers both without a gap: an event it could not see belonged to a
/// transaction still open then, whose commit wakes the reader; an event it saw beyond the
/// bound is reported held back. (Two statements need the probe to run after the read, which is
/// what [`held_back`] documents.) The runner claims the checkpoint it read from afterwards,
/// inside its batch's transaction ([`crate::checkpoint::claim`]), so a look that found nothing
/// costs this one statement.
///
/// # Errors
/// Any database error.
pub async fn read_next(
    conn: &mut PgConnection,
    after: Checkpoint,
    limit: i64,
) -> Result<NextBatch, sqlx::Error> {
    // The probe walks the feed index from the bound and stops at the first visible row, so
    // it costs one index descent whatever the backlog; `ORDER BY … LIMIT 1` rather than
    // `EXISTS` for the planner's sake (see `held_back`).
    let sql = format!(
        "SELECT batch.*, probe.held_back FROM \
           (SELECT COALESCE((SELECT true FROM events \
              WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()) \
              ORDER BY transaction_id, global_position LIMIT 1), false)) AS probe(held_back) \
         LEFT JOIN LATERAL \
           (SELECT {COLUMNS} FROM events \
            WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
              AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
            ORDER BY events.transaction_id, events.global_position \
            LIMIT $3) AS batch ON true"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let held_back = match rows.first() {
        Some(row) => row.try_get::<bool, _>(10)?,
        None => false,
    };
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        // No event: the one row the outer join keeps, with the batch's columns null.
        if row.try_get::<Option<i64>, _>(1)?.is_none() {
            break;
        }
        events.push(FeedEvent::from_row(row)?);
    }
    Ok(NextBatch { events, held_back })
}

/// Events after `after` up to and including `upto`, which must be at or below the feed's
/// bound (e.g. a [`head`] read earlier): a rebuild's last catch-up, which must stop exactly
/// where the checkpoint it hands over says.
///
/// A separate query from [`read_after`] on purpose: folding both bounds into one statement
/// (`CASE WHEN $3 IS NULL …`) turns the `pg_snapshot_xmin` bound from an index condition into
/// a filter, and a reader held back by an open transaction would then walk every later index
/// entry on each poll.
///
/// # Errors
/// Any database error.
pub async fn read_range(
    conn: &mut PgConnection,
    after: Checkpoint,
    upto: Checkpoint,
    aggregate_types: &[String],
    limit: i64,
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::text::xid8, $4) \
           AND (cardinality($5::text[]) = 0 OR aggregate_type = ANY($5)) \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $6"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(upto.transaction_id.to_string())
        .bind(upto.global_position)
        .bind(aggregate_types)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(FeedEvent::from_row).collect()
}

/// The last event the feed may hand out now (of any type), if any.
///
/// # Errors
/// Any database error.
pub async fn head(conn: &mut PgConnection) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(transaction_id, global_position)| Checkpoint {
        transaction_id,
        global_position,
    }))
}

/// Every event below the feed's bound as of now, in feed order, as one stream: a rebuild's
/// bulk read, one query instead of one per batch.
pub fn stream_all<'c>(
    conn: &'c mut PgConnection,
    aggregate_types: &'c [String],
) -> impl Stream<Item = Result<FeedEvent, sqlx::Error>> + Send + 'c {
    sqlx::query(STREAM_ALL)
        .bind(aggregate_types)
        .fetch(conn)
        .and_then(|row| std::future::ready(FeedEvent::from_row(&row)))
}

/// Every event up to and including `upto` of `aggregate_types` (empty = all), in feed order,
/// as one stream: a verify's fold up to a checkpoint, inside the caller's snapshot.
pub fn stream_until<'c>(
    conn: &'c mut PgConnection,
    upto: Checkpoint,
    aggregate_types: &'c [String],
) -> impl Stream<Item = Result<FeedEvent, sqlx::Error>> + Send + 'c {
    sqlx::query(STREAM_UNTIL)
        .bind(upto.transaction_id.to_string())
        .bind(upto.global_position)
        .bind(aggregate_types)
        .fetch(conn)
        .and_then(|row| std::future::ready(FeedEvent::from_row(&row)))
}

/// The events at `positions`, in feed order (for re-handling dead letters).
///
/// # Errors
/// Any database error.
pub async fn read_positions(
    conn: &mut PgConnection,
    positions: &[i64],
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE global_position = ANY($1) \
         ORDER BY events.transaction_id, events.global_position"
    );
    let rows = sqlx::query(&sql)
        .bind(positions)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(FeedEvent::from_row).collect()
}

/// Whether committed events after `after` are visible now: events the feed could not hand out
/// because an older transaction is still open, or events that became readable since the read
/// that did not return them. Each statement of a READ COMMITTED transaction takes its own
/// snapshot, so the transaction that held an event back can end between the read and this
/// check; asking only for events still held back then answered `false`, and the reader went
/// to sleep with a readable event until the next wake-up or poll. Either way the answer means
/// the same: look again soon (the transaction holding events back may end without any event
/// being appended to wake anyone).
///
/// # Errors
/// Any database error.
pub async fn held_back(
    conn: &mut PgConnection,
    after: Checkpoint,
    aggregate_types: &[String],
) -> Result<bool, sqlx::Error> {
    // `ORDER BY … LIMIT 1` rather than `EXISTS`: without table statistics (autovacuum off, a
    // young table) the planner answers an `EXISTS` with a sequential scan of the whole store,
    // 10–23 ms on 45k events, after every batch of every subscription; in feed order it walks
    // the (transaction_id, global_position) index from the checkpoint and stops at the first row.
    let first: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)) \
         ORDER BY transaction_id, global_position \
         LIMIT 1",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(aggregate_types)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(first.is_some())
}

/// The events of one aggregate after its `after_sequence`, in sequence order, as committed
/// now (whether or not the feed may hand them out yet): a live view's history and the gaps it
/// fills.
///
/// # Errors
/// Any database error.
pub async fn aggregate_events(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
) -> Result<Vec<FeedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(FeedEvent::from_row).collect()
}

/// The checkpoint of the event at `position`, if it is committed (and visible).
///
/// # Errors
/// Any database error.
pub async fn checkpoint_of(
    conn: &mut PgConnection,
    position: i64,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         WHERE global_position = $1",
    )
    .bind(position)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(transaction_id, global_position)| Checkpoint {
        transaction_id,
        global_position,
    }))
}

/// Age in seconds of the oldest transaction that holds an xid anywhere on the server: the feed
/// of every reader stops there until it ends.
///
/// # Errors
/// Any database error.
pub async fn oldest_transaction_age(conn: &mut PgConnection) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(xact_start)), 0)::float8 \
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
}
