DROP TABLE rm_booking_deadlines;
DROP TABLE rm_order_deadlines;
