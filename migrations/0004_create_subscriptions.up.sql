-- One row per subscriber of the ordered feed (projector or saga): the last event it handled.
-- A subscriber advances its row in the same transaction as the effects of the events, so the
-- row and the read model can never disagree. The checkpoint is the pair, never the position
-- alone: a later transaction can hold a lower global_position.
CREATE TABLE subscriptions (
    name            text        PRIMARY KEY,
    transaction_id  bigint      NOT NULL DEFAULT 0,
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Events a subscriber could not handle, and the later events of the same aggregate held behind
-- them so nothing is applied out of order. `parked` is the failed head of its aggregate's
-- chain, `waiting` is queued behind it; an operator asks for `retry` or `skip` through
-- requested_action, and the subscription's runner carries it out.
CREATE TABLE dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription     text        NOT NULL,
    aggregate_type   text        NOT NULL,
    aggregate_id     text        NOT NULL,
    transaction_id   bigint      NOT NULL,
    global_position  bigint      NOT NULL,
    event_type       text        NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('parked', 'waiting', 'resolved', 'skipped', 'superseded')),
    requested_action text        CHECK (requested_action IN ('retry', 'skip')),
    attempts         integer     NOT NULL DEFAULT 0,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription, global_position)
);

CREATE INDEX dead_letters_open ON dead_letters
    (subscription, aggregate_type, aggregate_id, transaction_id, global_position)
    WHERE status IN ('parked', 'waiting');
