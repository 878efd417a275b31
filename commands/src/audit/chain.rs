//! Walking every aggregate's hash chain and reporting what does not hold.
//!
//! The database computes `hash = sha256(previous hash ‖ content)` on insert (migration 0013);
//! here the content is rendered again from the columns as they are now and the chain is
//! recomputed in Rust. Each event is checked against its *stored* predecessor (joined by
//! sequence), so one edited event is reported once, not with every event after it, and the
//! store is read in one hash join of two sequential scans: walking it aggregate by aggregate
//! in key order visits the heap at random and took four times as long as a raw scan.

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::{Finding, FindingKind};

/// The content of an event as the trigger hashes it (`reserva_event_content`), rendered here
/// from the columns themselves so that verifying does not trust a function in the database.
pub(crate) const CONTENT: &str = "convert_to(concat_ws(chr(31), aggregate_type, aggregate_id, \
    sequence, event_type, event_version, payload::text, metadata::text, global_position, \
    transaction_id, (extract(epoch FROM recorded_at) * 1000000)::bigint), 'UTF8')";

/// One event as the walk reads it, with its stored predecessor (sequence − 1), if any.
#[derive(sqlx::FromRow)]
struct Link {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
    transaction_id: i64,
    content: Vec<u8>,
    hash: Vec<u8>,
    previous_hash: Option<Vec<u8>>,
    previous_transaction_id: Option<i64>,
    previous_position: Option<i64>,
}

/// The hash the trigger computes for `content` after `previous`.
pub(crate) fn chain(previous: &[u8], content: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(content);
    hasher.finalize().to_vec()
}

/// Walks every chain of aggregates with an event at or after `since` (every chain with 0),
/// calling `progress` with the events checked so far; returns the findings (in chain order)
/// and the count.
///
/// # Errors
/// Any database error.
pub(crate) async fn walk(
    conn: &mut PgConnection,
    since: i64,
    mut progress: impl FnMut(u64),
) -> Result<(Vec<Finding>, u64), sqlx::Error> {
    let sql = format!(
        "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.global_position, \
                e.transaction_id::text::bigint AS transaction_id, e.content, e.hash, \
                p.hash AS previous_hash, \
                p.transaction_id::text::bigint AS previous_transaction_id, \
                p.global_position AS previous_position \
         FROM (SELECT *, {CONTENT} AS content FROM events \
               WHERE $1 = 0 OR (aggregate_type, aggregate_id) IN ( \
                   SELECT aggregate_type, aggregate_id FROM events \
                   WHERE global_position >= $1)) e \
         LEFT JOIN events p ON p.aggregate_type = e.aggregate_type \
              AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1"
    );
    let mut findings = Vec::new();
    let mut gaps = Vec::new();
    let mut checked: u64 = 0;
    {
        let mut rows = sqlx::query_as::<_, Link>(&sql)
            .bind(since)
            .fetch(&mut *conn);
        while let Some(link) = rows.try_next().await? {
            checked += 1;
            if let Some(gap) = check(&link, &mut findings) {
                gaps.push(gap);
            }
            if checked.is_multiple_of(10_000) {
                progress(checked);
            }
        }
    }
    progress(checked);
    for gap in gaps {
        findings.push(describe_gap(conn, gap).await?);
    }
    // In chain order, whatever order the join streamed.
    findings.sort_by(|a, b| {
        (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
            &b.aggregate_type,
            &b.aggregate_id,
            b.sequence,
        ))
    });
    Ok((findings, checked))
}

/// An event whose predecessor is missing.
struct Gap {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
}

/// Reports a gap with the events missing before it (the last one still stored bounds them).
async fn describe_gap(conn: &mut PgConnection, gap: Gap) -> Result<Finding, sqlx::Error> {
    let before: Option<i64> = sqlx::query_scalar(
        "SELECT max(sequence) FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence < $3",
    )
    .bind(&gap.aggregate_type)
    .bind(&gap.aggregate_id)
    .bind(gap.sequence)
    .fetch_one(&mut *conn)
    .await?;
    let before = before.unwrap_or(0);
    Ok(Finding {
        kind: FindingKind::Deleted,
        detail: format!(
            "sequence {} follows {before}: events {}..{} are missing",
            gap.sequence,
            before + 1,
            gap.sequence - 1
        ),
        aggregate_type: gap.aggregate_type,
        aggregate_id: gap.aggregate_id,
        sequence: Some(gap.sequence),
        global_position: Some(gap.global_position),
    })
}

/// Checks one event against its stored predecessor (none at an aggregate's first); an event
/// whose predecessor is gone is returned as a gap (its link cannot be checked, nor its content).
fn check(link: &Link, findings: &mut Vec<Finding>) -> Option<Gap> {
    let finding = |kind, detail: String| Finding {
        kind,
        aggregate_type: link.aggregate_type.clone(),
        aggregate_id: link.aggregate_id.clone(),
        sequence: Some(link.sequence),
        global_position: Some(link.global_position),
        detail,
    };
    let previous = match (
        &link.previous_hash,
        link.previous_transaction_id,
        link.previous_position,
    ) {
        (Some(hash), Some(transaction_id), Some(position)) => {
            Some((hash.as_slice(), (transaction_id, position)))
        }
        _ => None,
    };
    if previous.is_none() && link.sequence != 1 {
        return Some(Gap {
            aggregate_type: link.aggregate_type.clone(),
            aggregate_id: link.aggregate_id.clone(),
            sequence: link.sequence,
            global_position: link.global_position,
        });
    }
    if let Some((_, at)) = previous
        && (link.transaction_id, link.global_position) <= at
    {
        findings.push(finding(
            FindingKind::Reordered,
            format!(
                "sequence {} is at position {} but sequence {} at {}: the feed has them the \
                 other way round",
                link.sequence,
                link.global_position,
                link.sequence - 1,
                at.1
            ),
        ));
    }
    let previous_hash = previous.map_or(&[][..], |(hash, _)| hash);
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
    None
}
