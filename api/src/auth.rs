//! Who is calling: the verified bearer token's subject and role.
//!
//! The authentication middleware verifies the token (when auth is on) and leaves a [`Caller`]
//! in the request's extensions; the rate limiter, idempotency keys and handlers read it from
//! there, so a token is verified once per request.

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Places, reads and cancels its own orders and bookings.
    Customer,
    /// Everything, including `/admin`.
    Admin,
}

/// The verified caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: the customer id for customers.
    pub subject: String,
    /// The token's role.
    pub role: Role,
}
