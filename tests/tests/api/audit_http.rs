//! Audit over HTTP: the customer's own timeline (owner only), the admin's paged event stream
//! with `as_of`, and a request's causation tree; bad input answers problem+json.

use api::auth::Role;
use serde_json::{Value, json};
use tests::{TestApp, eventually, spawn_app_with_auth};
use uuid::Uuid;

async fn register(app: &TestApp, admin: &str, sku: &str) {
    let response = app
        .post_as(
            admin,
            "/api/v1/stock-items",
            &json!({"sku": sku, "name": "Mug", "kind": "product", "quantity": 20,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
}

/// Places an order of one `sku` for `customer` and waits for its saga to complete it.
async fn completed_order(app: &TestApp, token: &str, customer: Uuid, sku: &str) -> String {
    let placed = app
        .post_as(
            token,
            "/api/v1/orders",
            &json!({"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}),
        )
        .await;
    assert_eq!(placed.status(), 202);
    let id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/orders/{id}/history");
    eventually("the order completes", || {
        let path = path.clone();
        async move {
            let body: Value = app.get_as(token, &path).await.json().await.ok()?;
            (body["changes"].as_array()?.last()?["status"] == "COMPLETED").then_some(())
        }
    })
    .await;
    id
}

#[tokio::test]
async fn a_customer_sees_the_timeline_of_their_own_order_and_no_one_elses() {
    // Arrange
    let app = spawn_app_with_auth().await;
    let admin = app.token("ops", Role::Admin);
    register(&app, &admin, "HIST-1").await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = app.token(&alice.to_string(), Role::Customer);
    let bob_token = app.token(&bob.to_string(), Role::Customer);
    let id = completed_order(&app, &alice_token, alice, "HIST-1").await;

    // Act
    let own = app
        .get_as(&alice_token, &format!("/api/v1/orders/{id}/history"))
        .await;
    let others = app
        .get_as(&bob_token, &format!("/api/v1/orders/{id}/history"))
        .await;
    let unknown = app
        .get_as(
            &alice_token,
            &format!("/api/v1/orders/{}/history", Uuid::new_v4()),
        )
        .await;
    let malformed = app
        .get_as(&alice_token, "/api/v1/orders/not-a-uuid/history")
        .await;

    // Assert: the statuses in order with times, no internal metadata; others get 404.
    assert_eq!(own.status(), 200);
    let own: Value = own.json().await.unwrap();
    let statuses: Vec<&str> = own["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"STARTED"));
    assert_eq!(statuses.last(), Some(&"COMPLETED"));
    assert!(statuses.windows(2).all(|w| w[0] != w[1]), "{statuses:?}");
    assert!(own["changes"][0]["at"].is_string());
    assert!(!own.to_string().contains("correlation_id"), "{own}");
    assert_eq!(others.status(), 404);
    assert_eq!(unknown.status(), 404);
    let others: Value = others.json().await.unwrap();
    assert_eq!(others["code"], "order_not_found");
    assert_eq!(malformed.status(), 400);
}

#[tokio::test]
async fn a_cancelled_orders_timeline_ends_with_the_reason_and_the_admin_stream_shows_who() {
    // Arrange: a customer's order cancelled by an admin.
    let app = spawn_app_with_auth().await;
    let admin = app.token("ops", Role::Admin);
    register(&app, &admin, "HIST-2").await;
    let customer = Uuid::new_v4();
    let token = app.token(&customer.to_string(), Role::Customer);
    let id = completed_order(&app, &token, customer, "HIST-2").await;
    let placed = app
        .post_as(
            &token,
            "/api/v1/orders",
            &json!({"customer_id": customer, "items": [{"sku": "HIST-2", "quantity": 1}]}),
        )
        .await;
    let second = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = app
        .post_as(
            &admin,
            &format!("/api/v1/orders/{second}/cancel"),
            &json!({"reason": "fraud check"}),
        )
        .await;
    assert_eq!(cancelled.status(), 202);

    // Act
    let timeline: Value = app
        .get_as(&token, &format!("/api/v1/orders/{second}/history"))
        .await
        .json()
        .await
        .unwrap();
    let stream = app
        .get_as(&admin, &format!("/admin/audit/order/{second}?per_page=100"))
        .await;
    let customer_on_admin = app
        .get_as(&token, &format!("/admin/audit/order/{id}"))
        .await;

    // Assert
    let last = timeline["changes"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["status"], "CANCELLED");
    assert_eq!(last["reason"], "fraud check");
    assert_eq!(stream.status(), 200);
    let stream: Value = stream.json().await.unwrap();
    let cancel = stream["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "OrderCancelled")
        .expect("the cancel is in the stream")
        .clone();
    assert_eq!(cancel["payload"]["OrderCancelled"]["by"], "admin");
    assert_eq!(cancel["event_version"], "2.0");
    assert_eq!(cancel["metadata"]["actor"], "ops");
    assert_eq!(customer_on_admin.status(), 403);
}

#[tokio::test]
async fn the_admin_stream_pages_and_shows_the_state_as_of_a_position() {
    // Arrange: a stock item with a registration, three restocks.
    let app = spawn_app_with_auth().await;
    let admin = app.token("ops", Role::Admin);
    register(&app, &admin, "ASOF-1").await;
    for _ in 0..3 {
        let restocked = app
            .post_as(
                &admin,
                "/api/v1/stock-items/ASOF-1/restock",
                &json!({"quantity": 5}),
            )
            .await;
        assert_eq!(restocked.status(), 202);
    }
    let all: Value = app
        .get_as(&admin, "/admin/audit/stock_item/ASOF-1")
        .await
        .json()
        .await
        .unwrap();
    let second_position = all["items"][1]["global_position"].as_i64().unwrap();

    // Act
    let page_2: Value = app
        .get_as(&admin, "/admin/audit/stock_item/ASOF-1?per_page=3&page=2")
        .await
        .json()
        .await
        .unwrap();
    let then: Value = app
        .get_as(
            &admin,
            &format!("/admin/audit/stock_item/ASOF-1?as_of={second_position}"),
        )
        .await
        .json()
        .await
        .unwrap();
    let bad_as_of = app
        .get_as(&admin, "/admin/audit/stock_item/ASOF-1?as_of=yesterday")
        .await;
    let bad_type = app.get_as(&admin, "/admin/audit/widget/ASOF-1").await;
    let none = app.get_as(&admin, "/admin/audit/stock_item/NOPE-1").await;

    // Assert
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    assert_eq!(page_2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page_2["items"][0]["sequence"], 4);
    assert_eq!(page_2["has_more"], false);
    assert_eq!(then["items"].as_array().unwrap().len(), 2);
    assert_eq!(then["as_of"]["sequence"], 2);
    assert_eq!(then["as_of"]["state"]["on_hand"], 25);
    assert_eq!(bad_as_of.status(), 400);
    let bad_as_of: Value = bad_as_of.json().await.unwrap();
    assert_eq!(bad_as_of["errors"][0]["field"], "as_of");
    assert_eq!(bad_type.status(), 404);
    assert_eq!(
        bad_type.json::<Value>().await.unwrap()["code"],
        "aggregate_type_not_found"
    );
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn the_trace_endpoint_answers_the_tree_of_one_request_and_404_for_an_unknown_one() {
    // Arrange
    let app = spawn_app_with_auth().await;
    let admin = app.token("ops", Role::Admin);
    register(&app, &admin, "TRACE-1").await;
    let customer = Uuid::new_v4();
    let token = app.token(&customer.to_string(), Role::Customer);
    let correlation = Uuid::new_v4().to_string();
    let placed = reqwest::Client::new()
        .post(format!("{}/api/v1/orders", app.address))
        .bearer_auth(&token)
        .header("X-Correlation-ID", &correlation)
        .json(&json!({"customer_id": customer, "items": [{"sku": "TRACE-1", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    let id = placed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Act: once the saga has completed the order, the trace holds it all.
    let path = format!("/admin/audit/traces/{correlation}");
    let trace: Value = eventually("the traced order completes", || {
        let (path, admin) = (path.clone(), admin.clone());
        let app = &app;
        async move {
            let body: Value = app.get_as(&admin, &path).await.json().await.ok()?;
            body.to_string().contains("OrderCompleted").then_some(body)
        }
    })
    .await;
    let unknown = app
        .get_as(&admin, &format!("/admin/audit/traces/{}", Uuid::new_v4()))
        .await;

    // Assert: one root (the request), the order's first event under it, saga work below.
    assert_eq!(trace["correlation_id"], correlation);
    let root = &trace["roots"][0];
    assert_eq!(root["actor"], customer.to_string());
    assert_eq!(root["caused"][0]["event"]["aggregate_id"], id);
    assert_eq!(root["caused"][0]["event"]["event_type"], "OrderPlaced");
    let text = trace.to_string();
    for event in [
        "StockReserved",
        "PaymentCreated",
        "PaymentSucceeded",
        "ReservationCommitted",
    ] {
        assert!(text.contains(event), "{event} missing from {text}");
    }
    assert!(trace["events"].as_u64().unwrap() >= 8, "{trace}");
    // The provider's webhook hangs under the payment's first event, by causation.
    let created = find(&trace["roots"][0]["caused"], "PaymentCreated").expect("PaymentCreated");
    let webhook = find(&created["caused"], "PaymentSucceeded").expect("under PaymentCreated");
    assert_eq!(webhook["event"]["metadata"]["actor"], "stripe");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["code"],
        "trace_not_found"
    );
}

/// The first node of `event_type` in a (sub)tree, depth first.
fn find<'a>(nodes: &'a Value, event_type: &str) -> Option<&'a Value> {
    nodes.as_array()?.iter().find_map(|node| {
        if node["event"]["event_type"] == event_type {
            Some(node)
        } else {
            find(&node["caused"], event_type)
        }
    })
}
