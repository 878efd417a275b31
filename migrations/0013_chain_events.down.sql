DROP TABLE audit_checkpoint_heads;
DROP TABLE audit_checkpoints;
DROP TRIGGER events_chain ON events;
DROP FUNCTION reserva_chain_event();
ALTER TABLE events DROP COLUMN hash;
DROP FUNCTION reserva_event_content(text, text, bigint, text, text, json, json, bigint, xid8, timestamptz);
