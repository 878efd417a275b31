//! Events as today's code reads them: payloads stored under an older `event_version` are
//! upgraded when read, by the store, the feed, rebuilds and replays alike, so an event is never
//! rewritten in place and old rows keep loading.
//!
//! Each upcaster names the aggregate type, the event type and the version it upgrades to, and
//! changes only the payload (`{"Variant": {…}}`).

use serde_json::Value;

/// One upgrade of one event type's payload.
struct Upcaster {
    aggregate_type: &'static str,
    event_type: &'static str,
    /// Payloads stored below this major version are upgraded.
    to_major: u32,
    upgrade: fn(&mut serde_json::Map<String, Value>),
}

/// Every upgrade, oldest first.
const UPCASTERS: [Upcaster; 1] = [Upcaster {
    aggregate_type: "order",
    event_type: "OrderCancelled",
    to_major: 2,
    // 2.0 records who cancelled. Before it only customers could cancel (through the API).
    upgrade: |fields| {
        fields
            .entry("by")
            .or_insert_with(|| Value::String("customer".to_owned()));
    },
}];

/// The major version of an `event_version` such as `1.0` (0 when it does not parse).
fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Whether an event stored under `event_version` needs upgrading before today's code reads it.
pub fn needs_upcast(aggregate_type: &str, event_type: &str, event_version: &str) -> bool {
    UPCASTERS.iter().any(|u| {
        u.aggregate_type == aggregate_type
            && u.event_type == event_type
            && major(event_version) < u.to_major
    })
}

/// `payload` (stored under `event_version`) as today's code reads it.
pub fn upcast(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    mut payload: Value,
) -> Value {
    for upcaster in &UPCASTERS {
        if upcaster.aggregate_type == aggregate_type
            && upcaster.event_type == event_type
            && major(event_version) < upcaster.to_major
            && let Some(Value::Object(fields)) = payload.get_mut(event_type)
        {
            (upcaster.upgrade)(fields);
        }
    }
    payload
}

/// Decodes a stored payload (JSON text) as today's code reads it: parsed straight into the
/// event type when its version is current, through [`upcast`] when it is older.
///
/// # Errors
/// The payload does not decode into `E` even after upgrading.
pub fn decode<E: serde::de::DeserializeOwned>(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<E, serde_json::Error> {
    if needs_upcast(aggregate_type, event_type, event_version) {
        let stored = serde_json::from_str(payload)?;
        serde_json::from_value(upcast(aggregate_type, event_type, event_version, stored))
    } else {
        serde_json::from_str(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{Canceller, OrderEvent, OrderStatus};
    use serde_json::json;

    #[test]
    fn a_cancel_stored_before_2_0_reads_as_the_customers() {
        let stored = json!({"OrderCancelled": {"reason": "changed my mind", "from": "STARTED"}});

        let read: OrderEvent =
            serde_json::from_value(upcast("order", "OrderCancelled", "1.0", stored)).unwrap();

        assert_eq!(
            read,
            OrderEvent::OrderCancelled {
                reason: "changed my mind".into(),
                from: OrderStatus::Started,
                by: Canceller::Customer,
            }
        );
        assert!(needs_upcast("order", "OrderCancelled", "1.0"));
        assert!(!needs_upcast("order", "OrderCancelled", "2.0"));
        assert!(!needs_upcast("order", "OrderPlaced", "1.0"));
    }

    #[test]
    fn a_current_payload_is_left_as_it_is() {
        let stored = json!({"OrderCancelled": {"reason": "x", "from": "STARTED", "by": "admin"}});
        assert_eq!(
            upcast("order", "OrderCancelled", "2.0", stored.clone()),
            stored
        );
    }
}
