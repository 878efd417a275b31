DROP INDEX rm_payments_created;
