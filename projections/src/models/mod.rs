//! The read models: one per aggregate type, and the deadlines of open orders and bookings.

pub mod bookings;
pub mod deadlines;
pub mod orders;
pub mod payments;
pub mod stock_items;

/// The error of an event that needs a row the model does not have.
fn missing(id: &str) -> String {
    format!("no row for {id} before this event")
}
