CREATE TABLE rm_order_deadlines (
    id            uuid        PRIMARY KEY,
    due_at        timestamptz NOT NULL,
    claimed_until timestamptz,
    position      bigint      NOT NULL
);
CREATE INDEX rm_order_deadlines_due ON rm_order_deadlines (due_at);
CREATE TABLE rm_booking_deadlines (
    id            uuid        PRIMARY KEY,
    due_at        timestamptz NOT NULL,
    claimed_until timestamptz,
    position      bigint      NOT NULL
);
CREATE INDEX rm_booking_deadlines_due ON rm_booking_deadlines (due_at);
-- The deadline read models rebuild themselves from the events once they run again.
DROP INDEX events_payment_intent;
DROP INDEX saga_instances_due;
ALTER TABLE saga_instances DROP COLUMN due_at, DROP COLUMN claimed_until;
