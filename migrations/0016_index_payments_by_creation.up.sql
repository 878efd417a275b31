-- GET /api/v1/payments for admins lists every payment newest first; customers' lists start
-- from their orders and bookings (rm_orders_customer, rm_bookings_customer, rm_payments_owner).
CREATE INDEX rm_payments_created ON rm_payments (created_at DESC, id);
