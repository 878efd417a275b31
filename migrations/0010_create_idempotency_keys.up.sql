-- Idempotency keys of command requests: one row per (caller, key). A row is claimed by one
-- atomic INSERT ... ON CONFLICT before the command runs (`claim_id`, `locked_until` is the
-- claim's lease); `status` stays NULL while the command runs and holds the stored answer
-- after. Rows older than 24 h count as absent and are purged in bounded batches.
CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    method        text        NOT NULL,
    target        text        NOT NULL,
    body_sha256   bytea       NOT NULL,
    claim_id      uuid        NOT NULL,
    locked_until  timestamptz NOT NULL,
    status        smallint,
    content_type  text,
    location      text,
    response_body bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
