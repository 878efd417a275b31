ALTER TABLE rm_stock_items DROP COLUMN depleted;
ALTER TABLE rm_bookings DROP COLUMN expires_at;
ALTER TABLE rm_orders DROP COLUMN expires_at;
