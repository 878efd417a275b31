-- Deadlines are write-side state: the saga that holds an order's or booking's stock knows when
-- it lapses, and writes `due_at` with its state and checkpoint (NULL once the flow no longer
-- waits for the customer). The expiry job claims due sagas with `claimed_until` and
-- FOR UPDATE SKIP LOCKED, as it claimed rows of the deadline read models these replace, so the
-- write side reads no read model.
ALTER TABLE saga_instances
    ADD COLUMN due_at        timestamptz,
    ADD COLUMN claimed_until timestamptz;
CREATE INDEX saga_instances_due ON saga_instances (saga_type, due_at) WHERE due_at IS NOT NULL;
-- A provider event without the intent's metadata (a refunded charge) finds its payment by the
-- PaymentCreated event that names the intent, not through the payments read model.
CREATE INDEX events_payment_intent ON events ((payload -> 'PaymentCreated' ->> 'provider_intent_id'))
    WHERE aggregate_type = 'payment' AND event_type = 'PaymentCreated';

UPDATE saga_instances s SET due_at = d.due_at, claimed_until = d.claimed_until
  FROM rm_order_deadlines d WHERE d.id = s.id AND s.saga_type = 'order_saga';
UPDATE saga_instances s SET due_at = d.due_at, claimed_until = d.claimed_until
  FROM rm_booking_deadlines d WHERE d.id = s.id AND s.saga_type = 'booking_saga';

DROP TABLE rm_order_deadlines;
DROP TABLE rm_booking_deadlines;
DROP TABLE IF EXISTS rm_order_deadlines__rebuild, rm_booking_deadlines__rebuild;
DELETE FROM subscriptions WHERE name IN ('order_deadlines', 'booking_deadlines');
UPDATE dead_letters SET status = 'superseded', requested_action = NULL, next_attempt_at = NULL
 WHERE subscription IN ('order_deadlines', 'booking_deadlines')
   AND status IN ('retrying', 'parked', 'waiting');
