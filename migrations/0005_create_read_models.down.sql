DROP TABLE IF EXISTS rm_payments, rm_bookings, rm_orders, rm_stock_items;
DROP TABLE IF EXISTS rm_payments__rebuild, rm_bookings__rebuild, rm_orders__rebuild,
    rm_stock_items__rebuild;
DELETE FROM subscriptions WHERE name IN ('orders', 'bookings', 'stock_items', 'payments');
