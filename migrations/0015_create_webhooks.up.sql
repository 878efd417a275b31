-- Outbound webhooks: endpoints registered by operators, and an outbox of deliveries per
-- endpoint. The `outbound_webhooks` feed subscription inserts one pending delivery per
-- (endpoint, event) in its batch transaction; the dispatcher sends them (no HTTP inside the
-- feed's transaction) and records every attempt.
CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    url         text NOT NULL,
    -- Integration-event subjects (`order.created.v1`, …) the endpoint is sent.
    event_types text[] NOT NULL,
    -- The HMAC-SHA256 key of `Reserva-Signature`; kept in clear because signing needs it.
    secret      text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    -- Only events recorded at or after this are delivered (no history replayed at
    -- registration).
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The event's global position: also `Reserva-Event-Id`. The key makes a replayed feed
    -- batch insert nothing twice.
    position        bigint NOT NULL,
    -- Feed order is (transaction_id, position): an endpoint's deliveries are sent in it.
    transaction_id  bigint NOT NULL,
    event_type      text NOT NULL,
    -- The exact bytes sent on every attempt (only the signature's timestamp changes).
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (endpoint_id, position)
);

-- The head of each endpoint's queue, and the endpoints that have one.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries
    (endpoint_id, transaction_id, position) WHERE status = 'pending';
-- `GET /admin/webhook-endpoints/{id}/deliveries`, newest first.
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries
    (endpoint_id, transaction_id DESC, position DESC);

CREATE TABLE webhook_attempts (
    endpoint_id  uuid NOT NULL,
    position     bigint NOT NULL,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    duration_ms  bigint NOT NULL,
    -- The receiver's HTTP status, when it answered.
    status_code  integer,
    -- Why the attempt failed (connection refused, timeout, a non-2xx status).
    error        text,
    PRIMARY KEY (endpoint_id, position, attempt),
    FOREIGN KEY (endpoint_id, position)
        REFERENCES webhook_deliveries (endpoint_id, position) ON DELETE CASCADE
);
