//! Views that join two read models show one point of the feed: an order is never shown
//! beside a payment older (or younger) than the store ever held them together, however far
//! apart the two projections are.

use serde_json::{Value, json};
use std::time::Duration;
use tests::{TestApp, eventually, spawn_app_with};
use uuid::Uuid;

/// Holds the payments projection between batches, as a slow or stuck projector would: its
/// swap lock, exclusively, on a connection of its own (dropping it lets it go).
async fn hold_payments(app: &TestApp) -> sqlx::PgConnection {
    app.hold_lock(
        "SELECT pg_advisory_lock(hashtextextended('reserva.subscription.swap.payments', 0))",
    )
    .await
}

/// An order's status as the orders model alone holds it (no join), once it has the order.
async fn order_status(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM rm_orders WHERE id = $1::uuid")
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

/// A combination the store held at some point: a completed order was paid, an order waiting
/// for its payment shows it.
fn assert_possible(order: &Value) {
    match order["status"].as_str().unwrap() {
        "COMPLETED" => assert_eq!(order["payment"]["status"], "succeeded", "{order}"),
        "PAYMENT_PENDING" => assert!(order["payment"].is_object(), "{order}"),
        _ => {}
    }
}

#[tokio::test]
async fn an_order_is_never_shown_beside_a_payment_the_store_never_held_with_it() {
    // Arrange: the payments projection held back before the order is placed.
    let app = spawn_app_with(|s| s.read_wait = Duration::from_millis(300)).await;
    app.register_product("MUG-1", 5).await;
    app.catch_up().await;
    let held = hold_payments(&app).await;
    let customer = Uuid::new_v4();
    let placed: Value = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": customer, "items": [{"sku": "MUG-1", "quantity": 1}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = placed["id"].as_str().unwrap().to_owned();

    // Act: the orders model moves on to COMPLETED (the saga pays through the simulated
    // gateway) while the payments model cannot show the payment.
    eventually("the orders model to complete the order", || async {
        (order_status(&app, &id).await.as_deref() == Some("COMPLETED")).then_some(())
    })
    .await;
    let (status, one) = app.get_json(&format!("/api/v1/orders/{id}")).await;
    let (list_status, list) = app
        .get_json(&format!("/api/v1/orders?customer={customer}"))
        .await;

    // Assert: rather than COMPLETED without its payment, the reads say the models are behind.
    assert_eq!(
        (status, &one["code"]),
        (503, &json!("projection_behind")),
        "{one}"
    );
    assert_eq!(
        (list_status, &list["code"]),
        (503, &json!("projection_behind")),
        "{list}"
    );

    // Act: the payments projection catches up.
    drop(held);

    // Assert: the order with its paid payment, and every read on the way showed a pair that
    // existed.
    let order = eventually("the order with its payment", || async {
        let (status, order) = app.get_json(&format!("/api/v1/orders/{id}")).await;
        if status == 200 {
            assert_possible(&order);
        }
        (status == 200).then_some(order)
    })
    .await;
    assert_eq!(order["status"], "COMPLETED");
    assert_eq!(order["payment"]["status"], "succeeded");
    let (_, list) = app
        .get_json(&format!("/api/v1/orders?customer={customer}"))
        .await;
    assert_eq!(list["items"][0]["payment"]["status"], "succeeded", "{list}");
}

#[tokio::test]
async fn reads_during_a_flow_only_ever_show_combinations_that_existed() {
    // Arrange
    let app = spawn_app_with(|s| s.read_wait = Duration::from_secs(5)).await;
    app.register_product("MUG-2", 50).await;
    let customer = Uuid::new_v4();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let placed: Value = app
            .post(
                "/api/v1/orders",
                &json!({"customer_id": customer, "items": [{"sku": "MUG-2", "quantity": 1}]}),
            )
            .await
            .json()
            .await
            .unwrap();
        // Read at least at the placement: without it the first poll may come before the
        // projection has the order at all (a 404 that is no inconsistency).
        ids.push((
            placed["id"].as_str().unwrap().to_owned(),
            placed["position"].as_i64().unwrap(),
        ));
    }

    // Act + Assert: poll every order while the sagas run them to completion.
    eventually("every order to complete", || async {
        let mut done = 0;
        for (id, placed_at) in &ids {
            let (status, order) = app
                .get_json(&format!("/api/v1/orders/{id}?min_position={placed_at}"))
                .await;
            assert_eq!(status, 200, "{order}");
            assert_possible(&order);
            done += usize::from(order["status"] == "COMPLETED");
        }
        let (_, list) = app
            .get_json(&format!("/api/v1/orders?customer={customer}"))
            .await;
        for order in list["items"].as_array().unwrap() {
            assert_possible(order);
        }
        (done == ids.len()).then_some(())
    })
    .await;
}
