-- postgres-es's snapshot table. Reserva uses the event-sourced store only (its snapshot and
-- aggregate stores double-apply events in 0.5), but the table is part of postgres-es's schema
-- and keeps the door open for snapshots once that is fixed upstream.
CREATE TABLE snapshots (
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
