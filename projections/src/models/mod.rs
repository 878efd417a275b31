//! The read models: one per aggregate type.

pub mod bookings;
pub mod orders;
pub mod payments;
pub mod stock_items;

/// The error of an event that needs a row the model does not have.
fn missing(id: &str) -> String {
    format!("no row for {id} before this event")
}
