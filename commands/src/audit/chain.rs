//! Walking every aggregate's hash chain and reporting what does not hold.
//!
//! The database computes `hash = sha256(previous hash ‖ content)` on insert (migration 0013);
//! here the content is rendered again from the columns as they are now and the chain is
//! recomputed in Rust, aggregate by aggregate in sequence order. Each event is checked against
//! its *stored* predecessor, so one edited event is reported once, not with every event after
//! it. Aggregate types are walked side by side, each on a connection of its own: a chain never
//! leaves its type, and one walk keeps a database core and a hashing core only half busy.

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::cell::{Cell, RefCell};

use super::{Finding, FindingKind};

/// The content of an event as the trigger hashes it (`reserva_event_content`), rendered here
/// from the columns themselves so that verifying does not trust a function in the database.
pub(crate) const CONTENT: &str = "convert_to(concat_ws(chr(31), aggregate_type, aggregate_id, \
    sequence, event_type, event_version, payload::text, metadata::text, global_position, \
    transaction_id, (extract(epoch FROM recorded_at) * 1000000)::bigint), 'UTF8')";

/// One event as the walk reads it.
#[derive(sqlx::FromRow)]
struct Link {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
    transaction_id: i64,
    content: Vec<u8>,
    hash: Vec<u8>,
}

/// The hash the trigger computes for `content` after `previous`.
pub(crate) fn chain(previous: &[u8], content: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(content);
    hasher.finalize().to_vec()
}

/// Where the walk stands in one aggregate.
struct Current {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    hash: Vec<u8>,
    at: (i64, i64),
}

/// Aggregate types walked at once.
const SIDE_BY_SIDE: usize = 4;

/// Every aggregate type in the store, from the primary key (a loose index scan: one probe
/// per type, not a scan of the table).
const TYPES: &str = "WITH RECURSIVE t AS ( \
        (SELECT aggregate_type FROM events ORDER BY aggregate_type LIMIT 1) \
        UNION ALL \
        SELECT (SELECT e.aggregate_type FROM events e WHERE e.aggregate_type > t.aggregate_type \
                ORDER BY e.aggregate_type LIMIT 1) \
        FROM t WHERE t.aggregate_type IS NOT NULL) \
    SELECT aggregate_type FROM t WHERE aggregate_type IS NOT NULL";

/// Walks every chain of aggregates with an event at or after `since` (every chain with 0),
/// calling `progress` with the events checked so far; returns the findings and the count.
///
/// # Errors
/// Any database error.
pub(crate) async fn walk(
    pool: &PgPool,
    since: i64,
    progress: impl FnMut(u64),
) -> Result<(Vec<Finding>, u64), sqlx::Error> {
    let types: Vec<String> = sqlx::query_scalar(TYPES).fetch_all(pool).await?;
    // The walks are polled together on this task, so plain cells share the count.
    let checked = Cell::new(0);
    let progress = RefCell::new(progress);
    let walks = types
        .iter()
        .map(|t| walk_type(pool, since, t, &checked, &progress));
    let found: Vec<Vec<Finding>> = futures::stream::iter(walks)
        .buffer_unordered(SIDE_BY_SIDE)
        .try_collect()
        .await?;
    (progress.borrow_mut())(checked.get());
    let mut findings: Vec<Finding> = found.into_iter().flatten().collect();
    // In chain order whichever walk ended first.
    findings.sort_by(|a, b| {
        (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
            &b.aggregate_type,
            &b.aggregate_id,
            b.sequence,
        ))
    });
    Ok((findings, checked.get()))
}

/// Walks the chains of one aggregate type.
async fn walk_type(
    pool: &PgPool,
    since: i64,
    aggregate_type: &str,
    checked: &Cell<u64>,
    progress: &RefCell<impl FnMut(u64)>,
) -> Result<Vec<Finding>, sqlx::Error> {
    let sql = format!(
        "SELECT aggregate_type, aggregate_id, sequence, global_position, \
                transaction_id::text::bigint AS transaction_id, {CONTENT} AS content, hash \
         FROM events \
         WHERE aggregate_type = $2 AND ($1 = 0 OR aggregate_id IN ( \
             SELECT aggregate_id FROM events \
             WHERE global_position >= $1 AND aggregate_type = $2)) \
         ORDER BY aggregate_type, aggregate_id, sequence"
    );
    let mut conn = feed::locks::streaming_connection(pool, "audit verify").await?;
    let mut rows = sqlx::query_as::<_, Link>(&sql)
        .bind(since)
        .bind(aggregate_type)
        .fetch(&mut conn);
    let mut findings = Vec::new();
    let mut current: Option<Current> = None;
    while let Some(link) = rows.try_next().await? {
        checked.set(checked.get() + 1);
        let same = current.as_ref().is_some_and(|c| {
            c.aggregate_type == link.aggregate_type && c.aggregate_id == link.aggregate_id
        });
        let previous = if same { current.take() } else { None };
        check(&link, previous.as_ref(), &mut findings);
        current = Some(Current {
            aggregate_type: link.aggregate_type,
            aggregate_id: link.aggregate_id,
            sequence: link.sequence,
            hash: link.hash,
            at: (link.transaction_id, link.global_position),
        });
        if checked.get().is_multiple_of(10_000) {
            (progress.borrow_mut())(checked.get());
        }
    }
    Ok(findings)
}

/// Checks one event against its stored predecessor (`None` at an aggregate's first).
fn check(link: &Link, previous: Option<&Current>, findings: &mut Vec<Finding>) {
    let finding = |kind, detail: String| Finding {
        kind,
        aggregate_type: link.aggregate_type.clone(),
        aggregate_id: link.aggregate_id.clone(),
        sequence: Some(link.sequence),
        global_position: Some(link.global_position),
        detail,
    };
    let expected_sequence = previous.map_or(1, |p| p.sequence + 1);
    if link.sequence != expected_sequence {
        findings.push(finding(
            FindingKind::Deleted,
            format!(
                "sequence {} follows {}: events {}..{} are missing",
                link.sequence,
                expected_sequence - 1,
                expected_sequence,
                link.sequence - 1
            ),
        ));
        // Its predecessor is gone, so its link cannot be checked; its content can't either.
        return;
    }
    if let Some(previous) = previous
        && (link.transaction_id, link.global_position) <= previous.at
    {
        findings.push(finding(
            FindingKind::Reordered,
            format!(
                "sequence {} is at position {} but sequence {} at {}: the feed has them the \
                 other way round",
                link.sequence, link.global_position, previous.sequence, previous.at.1
            ),
        ));
    }
    let previous_hash = previous.map_or(&[][..], |p| p.hash.as_slice());
    let recomputed = chain(previous_hash, &link.content);
    if recomputed != link.hash {
        findings.push(finding(
            FindingKind::Modified,
            format!(
                "stored hash {} but its columns and predecessor hash to {}",
                hex::encode(&link.hash),
                hex::encode(&recomputed)
            ),
        ));
    }
}
