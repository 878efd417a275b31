//! `audit verify` on signed checkpoints: what the hash chains alone cannot see (a stream cut
//! short, an event forged with a valid hash, history rewritten with every hash recomputed) is
//! caught by comparing each signed window with the store, and a checkpoint that was edited or
//! signed with another key is reported itself.

use super::{Store, audit_key, found, sign_all, signed_history, sql};
use commands::audit::{AuditKey, FindingKind, Verified, verify};

async fn verified(store: &Store, key: Option<&AuditKey>) -> Verified {
    verify(&store.pool, 0, key, |_| {})
        .await
        .expect("verify runs")
}

fn checkpoint(id: i64) -> String {
    format!("checkpoint {id}")
}

/// The findings that come from comparing a checkpoint, not from walking a chain.
fn from_checkpoints(verified: &Verified) -> usize {
    verified
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Checkpoint || f.detail.starts_with("under checkpoint"))
        .count()
}

#[tokio::test]
async fn the_last_event_of_a_stream_deleted_inside_a_signed_window_is_reported_as_deleted() {
    // Arrange: CUP-1 ends at event 4, signed by the first checkpoint.
    let store = Store::bare().await;
    let [first, _] = signed_history(&store, &audit_key()).await;

    // Act: what is left is a well-formed chain of three events.
    sql(
        &store.pool,
        "DELETE FROM events \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = 'CUP-1' AND sequence = 4",
    )
    .await;
    let verified = verified(&store, Some(&audit_key())).await;

    // Assert: the signed head is gone, and the window is one event short.
    assert_eq!(
        found(&verified),
        [
            (FindingKind::Checkpoint, checkpoint(first.id), None),
            (FindingKind::Deleted, "CUP-1".to_owned(), Some(4)),
        ],
        "{:#?}",
        verified.findings
    );
    assert_eq!(
        from_checkpoints(&verified),
        2,
        "the chain alone sees nothing"
    );
}

#[tokio::test]
async fn an_event_forged_with_a_valid_hash_into_a_signed_window_is_reported_as_inserted() {
    // Arrange
    let store = Store::bare().await;
    let [first, _] = signed_history(&store, &audit_key()).await;

    // Act: a fifth CUP-1 restock, hashed by the database's own trigger, dated into the first
    // window by taking the transaction of CUP-1's last signed event.
    sql(
        &store.pool,
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata, transaction_id) \
         SELECT aggregate_type, aggregate_id, 5, event_type, event_version, \
            '{\"StockRestocked\":{\"quantity\":50,\"on_hand\":76}}', metadata, transaction_id \
         FROM events \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = 'CUP-1' AND sequence = 4",
    )
    .await;
    let verified = verified(&store, Some(&audit_key())).await;

    // Assert
    assert_eq!(
        found(&verified),
        [
            (FindingKind::Checkpoint, checkpoint(first.id), None),
            (FindingKind::Inserted, "CUP-1".to_owned(), Some(5)),
        ],
        "{:#?}",
        verified.findings
    );
    assert_eq!(from_checkpoints(&verified), 2, "its chain link is valid");
}

#[tokio::test]
async fn history_rewritten_with_recomputed_hashes_is_caught_by_the_signed_head() {
    // Arrange
    let store = Store::bare().await;
    let [first, _] = signed_history(&store, &audit_key()).await;

    // Act: CUP-1's event 2 changed, then its hash and every later one recomputed exactly as
    // the trigger does, so each link holds again.
    sql(
        &store.pool,
        "UPDATE events SET payload = '{\"StockRestocked\":{\"quantity\":100,\"on_hand\":120}}' \
         WHERE aggregate_type = 'stock_item' AND aggregate_id = 'CUP-1' AND sequence = 2",
    )
    .await;
    for sequence in 2..=4 {
        sql(
            &store.pool,
            &format!(
                "UPDATE events e SET hash = sha256(coalesce((SELECT p.hash FROM events p \
                    WHERE p.aggregate_type = e.aggregate_type \
                      AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1), \
                    ''::bytea) || reserva_event_content(e.aggregate_type, e.aggregate_id, \
                    e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
                    e.global_position, e.transaction_id, e.recorded_at)) \
                 WHERE aggregate_type = 'stock_item' AND aggregate_id = 'CUP-1' \
                   AND sequence = {sequence}"
            ),
        )
        .await;
    }
    let verified = verified(&store, Some(&audit_key())).await;

    // Assert: only the head the first checkpoint signed differs.
    assert_eq!(
        found(&verified),
        [(FindingKind::Modified, "CUP-1".to_owned(), Some(4))],
        "{:#?}",
        verified.findings
    );
    assert!(
        verified.findings[0]
            .detail
            .starts_with(&format!("under checkpoint {}", first.id)),
        "{}",
        verified.findings[0].detail
    );
}

#[tokio::test]
async fn a_checkpoint_signed_with_another_key_is_reported_when_verified_with_the_right_key() {
    // Arrange: two checkpoints signed with the service's key, a third with another.
    let store = Store::bare().await;
    let right = audit_key();
    let wrong = AuditKey::new(b"someone-elses-key".to_vec());
    let [first, second] = signed_history(&store, &right).await;
    let third = sign_all(&store.pool, &wrong).await;

    // Act
    let with_right = verified(&store, Some(&right)).await;
    let with_wrong = verified(&store, Some(&wrong)).await;
    let unkeyed = verified(&store, None).await;

    // Assert
    assert_eq!(
        found(&with_right),
        [(FindingKind::Checkpoint, checkpoint(third.id), None)],
        "{:#?}",
        with_right.findings
    );
    assert!(
        with_right.findings[0]
            .detail
            .contains("not signed with this key"),
        "{}",
        with_right.findings[0].detail
    );
    assert_eq!(
        found(&with_wrong),
        [
            (FindingKind::Checkpoint, checkpoint(first.id), None),
            (FindingKind::Checkpoint, checkpoint(second.id), None),
        ]
    );
    assert!(
        unkeyed.is_clean(),
        "without a key only the records are checked: {:#?}",
        unkeyed.findings
    );
    assert_eq!(unkeyed.checkpoints, 3);
}

#[tokio::test]
async fn checkpoint_rows_edited_after_signing_are_reported() {
    // Arrange
    let store = Store::bare().await;
    let [first, second] = signed_history(&store, &audit_key()).await;

    // Act: the first checkpoint's head of PEN-1 and the second's event count changed.
    let head = sql(
        &store.pool,
        &format!(
            "UPDATE audit_checkpoint_heads SET hash = sha256(hash) \
             WHERE checkpoint_id = {} AND aggregate_id = 'PEN-1'",
            first.id
        ),
    )
    .await;
    let count = sql(
        &store.pool,
        &format!(
            "UPDATE audit_checkpoints SET events = events + 1 WHERE id = {}",
            second.id
        ),
    )
    .await;
    let verified = verified(&store, Some(&audit_key())).await;

    // Assert: each record no longer matches its digest; what it now claims no longer matches
    // the store either.
    assert_eq!((head, count), (1, 1));
    assert_eq!(
        found(&verified),
        [
            (FindingKind::Checkpoint, checkpoint(first.id), None),
            (FindingKind::Checkpoint, checkpoint(second.id), None),
            (FindingKind::Checkpoint, checkpoint(second.id), None),
            (FindingKind::Modified, "PEN-1".to_owned(), Some(2)),
        ],
        "{:#?}",
        verified.findings
    );
    let altered = verified
        .findings
        .iter()
        .filter(|f| f.detail.contains("changed after it was signed"))
        .count();
    assert_eq!(altered, 2, "{:#?}", verified.findings);
}
