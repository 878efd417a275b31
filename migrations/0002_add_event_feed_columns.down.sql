DROP INDEX events_feed_order;
ALTER TABLE events
    DROP COLUMN recorded_at,
    DROP COLUMN transaction_id,
    DROP COLUMN global_position;
