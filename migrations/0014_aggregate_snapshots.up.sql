-- The latest snapshot of a long-lived aggregate (a best-selling SKU): its state after
-- `sequence`, so a cold load reads the snapshot and the events after it instead of the whole
-- stream. Written by the command bus every N events (RESERVA_SNAPSHOTS__EVERY) from the state
-- the command produced, never by cqrs-es's snapshot store (0.5 applies new events twice).
-- Derived data: deleting a row only makes the next load slower; `reserva replay` compares each
-- row with the events it claims to summarize.
CREATE TABLE aggregate_snapshots (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL CHECK (sequence > 0),
    payload        jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);
