//! What a live view of each aggregate shows, and who may watch it.

use cqrs_es::Aggregate;
use domain::booking::Booking;
use domain::order::Order;
use domain::stock_item::StockItem;
use serde_json::{Value, json};
use uuid::Uuid;

/// An aggregate clients can watch.
pub trait LiveView: Aggregate + Default + Send + Sync + 'static {
    /// The SSE `event` name of its messages.
    const EVENT: &'static str;
    /// The `code` of the 404 for an id that has no events.
    const NOT_FOUND: &'static str;
    /// Whether a stream replays every change from the start (a status history) or starts
    /// from the current state (availability, whose history can be long).
    const FROM_START: bool;

    /// What a client watches; a message is sent whenever it changes.
    fn watched(&self) -> Value;

    /// The customer who may watch it besides admins (`None`: anyone who may read it).
    fn customer(&self) -> Option<Uuid>;
}

impl LiveView for Order {
    const EVENT: &'static str = "order.status_changed";
    const NOT_FOUND: &'static str = "order_not_found";
    const FROM_START: bool = true;

    fn watched(&self) -> Value {
        json!({ "status": self.status().map(|s| s.as_str()) })
    }

    fn customer(&self) -> Option<Uuid> {
        self.customer_id().map(|c| c.0)
    }
}

impl LiveView for Booking {
    const EVENT: &'static str = "booking.status_changed";
    const NOT_FOUND: &'static str = "booking_not_found";
    const FROM_START: bool = true;

    fn watched(&self) -> Value {
        json!({ "status": self.status().map(|s| s.as_str()) })
    }

    fn customer(&self) -> Option<Uuid> {
        self.customer_id().map(|c| c.0)
    }
}

impl LiveView for StockItem {
    const EVENT: &'static str = "stock.updated";
    const NOT_FOUND: &'static str = "stock_item_not_found";
    const FROM_START: bool = false;

    fn watched(&self) -> Value {
        json!({
            "on_hand": self.on_hand(),
            "reserved": self.reserved(),
            "available": self.available(),
        })
    }

    fn customer(&self) -> Option<Uuid> {
        None
    }
}
