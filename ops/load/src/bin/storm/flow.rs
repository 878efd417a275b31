//! The two flows a customer starts, and the statuses each ends in.

/// Order statuses a flow ends in (a refund may still follow a cancel).
pub const ORDER_ENDS: [&str; 6] = [
    "COMPLETED",
    "STOCK_FAILED",
    "PAYMENT_FAILED",
    "CANCELLED",
    "EXPIRED",
    "REFUNDED",
];
/// Booking statuses a flow ends in.
pub const BOOKING_ENDS: [&str; 6] = [
    "CONFIRMED",
    "SEATS_UNAVAILABLE",
    "PAYMENT_FAILED",
    "CANCELLED",
    "EXPIRED",
    "REFUNDED",
];

/// An order or a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `POST /orders`.
    Order,
    /// `POST /bookings`.
    Booking,
}

impl Flow {
    /// `order` or `booking`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Booking => "booking",
        }
    }

    /// The collection under `/api/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Order => "orders",
            Self::Booking => "bookings",
        }
    }

    /// The statuses the flow ends in.
    pub fn ends(self) -> &'static [&'static str] {
        match self {
            Self::Order => &ORDER_ENDS,
            Self::Booking => &BOOKING_ENDS,
        }
    }

    /// The status of a paid flow.
    pub fn success(self) -> &'static str {
        match self {
            Self::Order => "COMPLETED",
            Self::Booking => "CONFIRMED",
        }
    }
}
