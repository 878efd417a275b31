//! Signed checkpoints of the chain heads: what pins history down against a writer who can
//! recompute hashes.
//!
//! A checkpoint covers one window of the feed, after the previous checkpoint and up to the
//! feed's head when it was taken. It stores the head (last sequence and hash) of every aggregate
//! with an event in the window, the window's event count, and a digest chained to the previous
//! checkpoint's, signed with HMAC-SHA256 under a key that only the service's configuration
//! holds. `verify` recomputes every window from the store as it is now.

use feed::{Checkpoint, read};
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::BTreeMap;

use super::{Finding, FindingKind};

/// The key checkpoints are signed with. Never stored in the database; never printed.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl AuditKey {
    /// A key from its secret bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

/// An aggregate's head: its last sequence and that event's hash.
type Heads = BTreeMap<(String, String), (i64, Vec<u8>)>;

/// What a window of the feed holds.
struct Window {
    heads: Heads,
    events: i64,
}

/// One stored checkpoint.
#[derive(sqlx::FromRow)]
struct Stored {
    id: i64,
    transaction_id: i64,
    global_position: i64,
    events: i64,
    aggregates: i64,
    digest: Vec<u8>,
    signature: Vec<u8>,
}

impl Stored {
    fn upto(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// What signing a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// The new checkpoint's id.
    pub id: i64,
    /// Events it covers (those of its window).
    pub events: i64,
    /// Aggregates with an event in its window.
    pub aggregates: i64,
    /// The feed position it covers up to.
    pub upto: Checkpoint,
}

/// Signs a checkpoint of everything appended since the last one, up to the feed's head;
/// `None` when nothing was appended.
///
/// Safe with several instances: the window is read and the checkpoint written under an
/// advisory lock, so two never sign the same window.
///
/// # Errors
/// Any database error.
pub async fn sign(pool: &PgPool, key: &AuditKey) -> Result<Option<Signed>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('reserva.audit.checkpoint', 0))")
        .execute(&mut *tx)
        .await?;
    let last: Option<Stored> = sqlx::query_as(
        "SELECT id, transaction_id, global_position, events, aggregates, digest, signature \
         FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let after = last.as_ref().map_or(Checkpoint::START, Stored::upto);
    let Some(upto) = read::head(&mut tx).await?.filter(|head| *head > after) else {
        return Ok(None);
    };
    let window = window(&mut tx, after, upto).await?;
    let previous = last.map(|l| l.digest).unwrap_or_default();
    let digest = digest(&previous, &window);
    let signature = key.sign(&message(upto, window.events, &digest));
    let aggregates = i64::try_from(window.heads.len()).unwrap_or(i64::MAX);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_checkpoints \
            (transaction_id, global_position, events, aggregates, digest, signature) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(upto.transaction_id)
    .bind(upto.global_position)
    .bind(window.events)
    .bind(aggregates)
    .bind(&digest)
    .bind(&signature)
    .fetch_one(&mut *tx)
    .await?;
    let (types, ids, sequences, hashes) = columns(&window.heads);
    sqlx::query(
        "INSERT INTO audit_checkpoint_heads \
            (checkpoint_id, aggregate_type, aggregate_id, sequence, hash) \
         SELECT $1, t, i, s, h FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bytea[]) \
           AS u(t, i, s, h)",
    )
    .bind(id)
    .bind(types)
    .bind(ids)
    .bind(sequences)
    .bind(hashes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Signed {
        id,
        events: window.events,
        aggregates,
        upto,
    }))
}

type Columns = (Vec<String>, Vec<String>, Vec<i64>, Vec<Vec<u8>>);

fn columns(heads: &Heads) -> Columns {
    let mut out: Columns = Default::default();
    for ((t, i), (s, h)) in heads {
        out.0.push(t.clone());
        out.1.push(i.clone());
        out.2.push(*s);
        out.3.push(h.clone());
    }
    out
}

/// The heads and event count of the feed window `(after, upto]`, as the store holds it now.
async fn window(
    conn: &mut PgConnection,
    after: Checkpoint,
    upto: Checkpoint,
) -> Result<Window, sqlx::Error> {
    let mut rows = sqlx::query_as::<_, (String, String, i64, Vec<u8>)>(
        "SELECT aggregate_type, aggregate_id, sequence, hash FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::text::xid8, $4)",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(upto.transaction_id.to_string())
    .bind(upto.global_position)
    .fetch(conn);
    let mut window = Window {
        heads: Heads::new(),
        events: 0,
    };
    while let Some((aggregate_type, aggregate_id, sequence, hash)) = rows.try_next().await? {
        window.events += 1;
        let head = window
            .heads
            .entry((aggregate_type, aggregate_id))
            .or_insert((sequence, hash.clone()));
        if sequence > head.0 {
            *head = (sequence, hash);
        }
    }
    Ok(window)
}

/// The window's digest, chained to the previous checkpoint's.
fn digest(previous: &[u8], window: &Window) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    for ((t, i), (s, h)) in &window.heads {
        hasher.update(format!("{t}\u{1f}{i}\u{1f}{s}\u{1f}{}\n", hex::encode(h)));
    }
    hasher.update(format!("events:{}", window.events));
    hasher.finalize().to_vec()
}

/// What the HMAC signs.
fn message(upto: Checkpoint, events: i64, digest: &[u8]) -> Vec<u8> {
    format!(
        "reserva audit checkpoint v1\n{}\n{}\n{events}\n{}",
        upto.transaction_id,
        upto.global_position,
        hex::encode(digest)
    )
    .into_bytes()
}

/// Checks every checkpoint against the store as it is now and against `key`.
///
/// # Errors
/// Any database error.
pub(crate) async fn verify(
    conn: &mut PgConnection,
    key: Option<&AuditKey>,
) -> Result<(Vec<Finding>, u64), sqlx::Error> {
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT id, transaction_id, global_position, events, aggregates, digest, signature \
         FROM audit_checkpoints ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut findings = Vec::new();
    let mut after = Checkpoint::START;
    let mut previous = Vec::new();
    for checkpoint in &stored {
        let upto = checkpoint.upto();
        let signed: Heads = sqlx::query_as::<_, (String, String, i64, Vec<u8>)>(
            "SELECT aggregate_type, aggregate_id, sequence, hash FROM audit_checkpoint_heads \
                 WHERE checkpoint_id = $1",
        )
        .bind(checkpoint.id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(t, i, s, h)| ((t, i), (s, h)))
        .collect();
        let signed_window = Window {
            heads: signed,
            events: checkpoint.events,
        };
        // The signed record itself: untouched, and signed with our key.
        let digest = digest(&previous, &signed_window);
        let intact = digest == checkpoint.digest
            && i64::try_from(signed_window.heads.len()).ok() == Some(checkpoint.aggregates);
        let genuine = key.is_none_or(|key| {
            key.sign(&message(upto, checkpoint.events, &checkpoint.digest)) == checkpoint.signature
        });
        if !intact || !genuine {
            findings.push(Finding::checkpoint(
                checkpoint.id,
                if intact {
                    "its signature does not match: it was not signed with this key"
                } else {
                    "its stored heads or counts were changed after it was signed"
                },
            ));
        }
        let now = window(conn, after, upto).await?;
        compare(checkpoint.id, &signed_window, &now, &mut findings);
        after = upto;
        previous = checkpoint.digest.clone();
    }
    Ok((findings, stored.len() as u64))
}

/// Every difference between a window as signed and as the store holds it now.
fn compare(id: i64, signed: &Window, now: &Window, findings: &mut Vec<Finding>) {
    for (key, (sequence, hash)) in &now.heads {
        match signed.heads.get(key) {
            None => findings.push(Finding::under_checkpoint(
                id,
                FindingKind::Inserted,
                key,
                Some(*sequence),
                "has events in this checkpoint's window that it did not sign".to_owned(),
            )),
            Some((signed_sequence, _)) if sequence > signed_sequence => {
                findings.push(Finding::under_checkpoint(
                    id,
                    FindingKind::Inserted,
                    key,
                    Some(*sequence),
                    format!(
                        "was signed at sequence {signed_sequence}, the store now ends at {sequence}"
                    ),
                ));
            }
            Some((signed_sequence, _)) if sequence < signed_sequence => {
                findings.push(Finding::under_checkpoint(
                    id,
                    FindingKind::Deleted,
                    key,
                    Some(*signed_sequence),
                    format!(
                        "was signed at sequence {signed_sequence}, the store now ends at {sequence}"
                    ),
                ));
            }
            Some((_, signed_hash)) if signed_hash != hash => {
                findings.push(Finding::under_checkpoint(
                    id,
                    FindingKind::Modified,
                    key,
                    Some(*sequence),
                    "its chain head differs from the signed one: an event up to it was rewritten"
                        .to_owned(),
                ));
            }
            Some(_) => {}
        }
    }
    for (key, (sequence, _)) in &signed.heads {
        if !now.heads.contains_key(key) {
            findings.push(Finding::under_checkpoint(
                id,
                FindingKind::Deleted,
                key,
                Some(*sequence),
                "was signed in this window and has no event in it any more".to_owned(),
            ));
        }
    }
    if signed.events != now.events {
        findings.push(Finding::checkpoint(
            id,
            &format!(
                "it signed {} events in its window; the store now holds {}",
                signed.events, now.events
            ),
        ));
    }
}
