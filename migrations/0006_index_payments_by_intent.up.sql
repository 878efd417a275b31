-- Webhooks that carry no payment_id (charge.refunded) find their payment by the provider's
-- intent id.
CREATE INDEX rm_payments_intent ON rm_payments (provider_intent_id);
