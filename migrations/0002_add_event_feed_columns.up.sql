-- Columns postgres-es never writes, filled by the database, that make a global ordered feed
-- possible. Identity values are taken before commit, so readers order by
-- (transaction_id, global_position) and stop at the oldest transaction still in flight.
ALTER TABLE events
    ADD COLUMN global_position bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    ADD COLUMN transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN recorded_at     timestamptz NOT NULL DEFAULT now();

CREATE INDEX events_feed_order ON events (transaction_id, global_position);
