-- A failing event no longer stalls its subscription while it is retried: it is set aside at
-- once as the `retrying` head of its aggregate (later events wait behind it), tried again at
-- `next_attempt_at` with back-off between batches, and `parked` for an operator once out of
-- tries.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_status_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_status_check
    CHECK (status IN ('retrying', 'parked', 'waiting', 'resolved', 'skipped', 'superseded'));
ALTER TABLE dead_letters ADD COLUMN next_attempt_at timestamptz;

DROP INDEX dead_letters_open;
CREATE INDEX dead_letters_open ON dead_letters
    (subscription, aggregate_type, aggregate_id, transaction_id, global_position)
    WHERE status IN ('retrying', 'parked', 'waiting');
