-- Tamper evidence. Every event carries `hash` = sha256(hash of the previous event of its
-- aggregate ‖ the event's content), computed by the database on insert, so every writer is
-- covered, a hand-written INSERT included. The content is every column but `hash`, rendered as
-- text and joined by U+001F; `reserva audit verify` recomputes it from the columns as stored.
ALTER TABLE events ADD COLUMN hash bytea;

CREATE FUNCTION reserva_event_content(
    aggregate_type text, aggregate_id text, sequence bigint, event_type text,
    event_version text, payload json, metadata json, global_position bigint,
    transaction_id xid8, recorded_at timestamptz
) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(concat_ws(chr(31), aggregate_type, aggregate_id, sequence, event_type,
        event_version, payload::text, metadata::text, global_position, transaction_id,
        (extract(epoch FROM recorded_at) * 1000000)::bigint), 'UTF8')
$$;

-- Chain what the store holds already, aggregate by aggregate in sequence order.
DO $$
DECLARE
    e record;
    previous bytea := ''::bytea;
    last_type text;
    last_id text;
BEGIN
    FOR e IN SELECT ctid, * FROM events ORDER BY aggregate_type, aggregate_id, sequence LOOP
        IF e.aggregate_type IS DISTINCT FROM last_type OR e.aggregate_id IS DISTINCT FROM last_id
        THEN
            previous := ''::bytea;
        END IF;
        previous := sha256(previous || reserva_event_content(e.aggregate_type, e.aggregate_id,
            e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.global_position,
            e.transaction_id, e.recorded_at));
        UPDATE events SET hash = previous WHERE ctid = e.ctid;
        last_type := e.aggregate_type;
        last_id := e.aggregate_id;
    END LOOP;
END
$$;
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

CREATE FUNCTION reserva_chain_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous bytea;
BEGIN
    IF NEW.sequence > 1 THEN
        SELECT hash INTO previous FROM events
         WHERE aggregate_type = NEW.aggregate_type AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
    END IF;
    -- A missing predecessor chains from nothing; `audit verify` reports the gap.
    NEW.hash := sha256(coalesce(previous, ''::bytea) || reserva_event_content(
        NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.event_type, NEW.event_version,
        NEW.payload, NEW.metadata, NEW.global_position, NEW.transaction_id, NEW.recorded_at));
    RETURN NEW;
END
$$;
CREATE TRIGGER events_chain BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION reserva_chain_event();

-- Signed checkpoints of the chain heads. Each one covers the events of one window of the feed
-- (after the previous checkpoint, up to its own `(transaction_id, global_position)`): it keeps
-- the head (last sequence and hash) of every aggregate the window touched, and signs, with an
-- HMAC key that lives only in the service's configuration, a digest chained to the previous
-- checkpoint's. Rewriting history under a checkpoint changes a head or a count `audit verify`
-- recomputes from the store; forging a checkpoint needs the key.
CREATE TABLE audit_checkpoints (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signed_at       timestamptz NOT NULL DEFAULT now(),
    transaction_id  bigint      NOT NULL,
    global_position bigint      NOT NULL,
    events          bigint      NOT NULL,
    aggregates      bigint      NOT NULL,
    digest          bytea       NOT NULL,
    signature       bytea       NOT NULL
);

CREATE TABLE audit_checkpoint_heads (
    checkpoint_id  bigint NOT NULL REFERENCES audit_checkpoints (id),
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    hash           bytea  NOT NULL,
    PRIMARY KEY (checkpoint_id, aggregate_type, aggregate_id)
);
