-- Deadlines are read models (rebuildable from OrderPlaced/BookingPlaced and the events that end
-- them): one row per unpaid order or booking, deleted when it ends. The expiry job claims due
-- rows by setting `claimed_until` with FOR UPDATE SKIP LOCKED, so several instances never
-- expire the same one at once; a claim that lapses (the claimer died) is taken again.
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
