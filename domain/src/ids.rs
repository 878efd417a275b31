//! Typed identifiers, and the deterministic ones that make saga commands idempotent.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::quantity::Sku;

/// Namespace for Reserva's v5 (name-based) ids; fixed forever, or derived ids would change.
const NAMESPACE: Uuid = Uuid::from_u128(0x5f1d_2a4e_8c3b_4e6f_9a70_1b2c_3d4e_5f60);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An order's id (also its aggregate id).
    OrderId
);
uuid_id!(
    /// A booking's id (also its aggregate id).
    BookingId
);
uuid_id!(
    /// A payment's id (also its aggregate id).
    PaymentId
);
uuid_id!(
    /// The customer who places orders and bookings (the token subject when auth is on).
    CustomerId
);
uuid_id!(
    /// One hold on a StockItem.
    ReservationId
);

/// The order or booking a reservation or payment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    /// An order line.
    Order(OrderId),
    /// A booking's seats.
    Booking(BookingId),
}

impl Owner {
    /// Kind and id as bytes, so an order and a booking that share a UUID still derive
    /// different ids.
    fn name(self) -> Vec<u8> {
        let (kind, id): (&[u8], Uuid) = match self {
            Self::Order(id) => (b"order:", id.0),
            Self::Booking(id) => (b"booking:", id.0),
        };
        [kind, id.as_bytes().as_slice()].concat()
    }
}

impl ReservationId {
    /// The one reservation an owner can hold on a SKU.
    ///
    /// Derived, not random, so a saga that re-issues a reserve after a crash addresses the same
    /// hold and the StockItem treats it as a no-op.
    pub fn for_owner(owner: Owner, sku: &Sku) -> Self {
        let mut name = owner.name();
        name.push(b'/');
        name.extend_from_slice(sku.as_str().as_bytes());
        Self(Uuid::new_v5(&NAMESPACE, &name))
    }
}

impl PaymentId {
    /// The payment of an order or booking; deterministic for the same reason as reservations.
    pub fn for_owner(owner: Owner) -> Self {
        let mut name = b"payment/".to_vec();
        name.extend_from_slice(&owner.name());
        Self(Uuid::new_v5(&NAMESPACE, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let order = Owner::Order(OrderId(Uuid::from_u128(1)));
        let a = Sku::parse("A").unwrap();
        let b = Sku::parse("B").unwrap();
        assert_eq!(
            ReservationId::for_owner(order, &a),
            ReservationId::for_owner(order, &a)
        );
        assert_ne!(
            ReservationId::for_owner(order, &a),
            ReservationId::for_owner(order, &b)
        );
        let booking = Owner::Booking(BookingId(Uuid::from_u128(1)));
        assert_ne!(
            ReservationId::for_owner(order, &a),
            ReservationId::for_owner(booking, &a)
        );
        assert_ne!(PaymentId::for_owner(order), PaymentId::for_owner(booking));
    }
}
