DROP INDEX dead_letters_open;
UPDATE dead_letters SET status = 'parked' WHERE status = 'retrying';
ALTER TABLE dead_letters DROP COLUMN next_attempt_at;
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_status_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_status_check
    CHECK (status IN ('parked', 'waiting', 'resolved', 'skipped', 'superseded'));
CREATE INDEX dead_letters_open ON dead_letters
    (subscription, aggregate_type, aggregate_id, transaction_id, global_position)
    WHERE status IN ('parked', 'waiting');
