-- When an unpaid order or booking expires (NULL for those placed before deadlines existed), and
-- whether a stock item has nothing left to sell.
ALTER TABLE rm_orders ADD COLUMN expires_at timestamptz;
ALTER TABLE rm_bookings ADD COLUMN expires_at timestamptz;
ALTER TABLE rm_stock_items ADD COLUMN depleted boolean NOT NULL DEFAULT false;
-- Existing rows get the values their next event would give them (low stock needs a threshold).
UPDATE rm_stock_items
SET depleted = (available = 0),
    low_stock = (low_stock_threshold > 0 AND available <= low_stock_threshold);
