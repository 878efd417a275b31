-- Process managers' state: one row per order or booking saga, written by the saga's
-- subscription in the same transaction as its checkpoint, so state and checkpoint never
-- disagree. `payment_id` maps the payment's events back to the saga that created it.
CREATE TABLE saga_instances (
    id          uuid        PRIMARY KEY,
    saga_type   text        NOT NULL,
    state       text        NOT NULL,
    data        jsonb       NOT NULL,
    version     integer     NOT NULL,
    payment_id  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX saga_instances_payment ON saga_instances (payment_id)
    WHERE payment_id IS NOT NULL;
CREATE INDEX saga_instances_state ON saga_instances (saga_type, state);

-- Every event a saga handled: what it decided and what each command it issued answered.
CREATE TABLE saga_steps (
    saga_id         uuid        NOT NULL REFERENCES saga_instances (id) ON DELETE CASCADE,
    step            integer     NOT NULL,
    global_position bigint      NOT NULL,
    event_type      text        NOT NULL,
    state           text        NOT NULL,
    commands        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, step)
);
