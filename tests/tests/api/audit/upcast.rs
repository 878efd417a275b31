//! Events stored in an older shape keep working: an `OrderCancelled` 1.0 (before it recorded
//! who cancelled) loads through the command bus, is projected, and replays cleanly.

use super::insert_raw;
use commands::CommandBus;
use commands::audit::history::status_history;
use commands::audit::replay::{Scope, replay};
use domain::order::{Canceller, Order, OrderCommand, OrderStatus};
use serde_json::{Value, json};
use tests::spawn_app_without_sagas;

#[tokio::test]
async fn an_order_cancelled_stored_in_the_1_0_shape_loads_projects_and_replays() {
    // Arrange: a real order (no saga moves it), then its cancel as release 1.x wrote it.
    let app = spawn_app_without_sagas().await;
    app.register_product("MUG-1", 5).await;
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": uuid::Uuid::new_v4(),
                    "items": [{"sku": "MUG-1", "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = json!({"OrderCancelled": {"reason": "changed my mind", "from": "STARTED"}});
    insert_raw(
        &app.pool,
        ("order", &id, 2),
        ("OrderCancelled", "1.0"),
        &old,
    )
    .await;

    // Act
    let loaded = app.bus.load::<Order>(&id).await.expect("the bus loads it");
    let fresh = CommandBus::new(app.pool.clone())
        .load::<Order>(&id)
        .await
        .expect("a new bus loads it");
    let again = app
        .bus
        .execute::<Order>(
            &id,
            OrderCommand::Cancel {
                reason: "twice".to_owned(),
                by: Canceller::Admin,
            },
            &commands::CommandMetadata::system("test"),
        )
        .await
        .expect("a repeated cancel is accepted");
    let position = app.catch_up().await;
    let (code, view) = app
        .get_json(&format!("/api/v1/orders/{id}?min_position={position}"))
        .await;
    let replayed = replay(&app.pool, Scope::One("order", &id), |_| {})
        .await
        .unwrap();
    let history = status_history(&app.pool, "order", &id).await.unwrap();

    // Assert: read as a customer's cancel by the store…
    assert_eq!(loaded.status(), Some(OrderStatus::Cancelled));
    assert_eq!(fresh, loaded);
    assert_eq!(
        (again.events, again.sequence),
        (0, 2),
        "the bus decided on the old row: already cancelled"
    );
    let stored = app.events_for("order", &id).await;
    assert_eq!(stored.len(), 2, "nothing rewritten or added");
    assert_eq!(stored[1].payload, old);
    // …by the orders read model…
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["status"], "CANCELLED", "{view}");
    assert_eq!(view["failure_reason"], "changed my mind", "{view}");
    // …and by replay and the status history.
    assert!(replayed.is_clean(), "{:#?}", replayed.problems);
    assert_eq!(replayed.events, 2);
    let statuses: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|c| (c.status.as_str(), c.reason.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [("STARTED", None), ("CANCELLED", Some("changed my mind"))]
    );
}
