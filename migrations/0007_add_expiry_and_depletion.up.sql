-- When an unpaid order or booking expires (NULL for those placed before deadlines existed), and
-- whether a stock item has nothing left to sell.
ALTER TABLE rm_orders ADD COLUMN expires_at timestamptz;
ALTER TABLE rm_bookings ADD COLUMN expires_at timestamptz;
ALTER TABLE rm_stock_items ADD COLUMN depleted boolean NOT NULL DEFAULT false;
