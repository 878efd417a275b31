DROP INDEX rm_payments_intent;
