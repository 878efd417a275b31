//! Bad input gets a clear 4xx problem+json and writes nothing.

use serde_json::{Value, json};
use tests::{TestApp, spawn_app};

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn json_case(
    name: &'static str,
    path: &'static str,
    body: Value,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        path,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        status: if code == "validation_failed" {
            400
        } else {
            422
        },
        code,
        field,
    }
}

fn product(overrides: Value) -> Value {
    let mut body = json!({"sku": "GOOD-1", "name": "Mug", "kind": "product", "quantity": 5,
                          "unit_price": {"amount": 1500, "currency": "MXN"}});
    for (k, v) in overrides.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

// Long on purpose: the table of bad requests itself, one entry per case.
fn cases() -> Vec<Case> {
    let customer = "7f0c1a9e-3a0e-4a47-9f39-0a3f0b8f9d11";
    let v = "validation_failed";
    vec![
        Case {
            name: "malformed json",
            path: "/api/v1/stock-items",
            content_type: "application/json",
            body: b"{\"sku\": \"A\",".to_vec(),
            status: 400,
            code: "malformed_json",
            field: None,
        },
        Case {
            name: "trailing garbage",
            path: "/api/v1/orders",
            content_type: "application/json",
            body: b"{} {}".to_vec(),
            status: 400,
            code: "malformed_json",
            field: None,
        },
        Case {
            name: "not json content type",
            path: "/api/v1/stock-items",
            content_type: "text/plain",
            body: product(json!({})).to_string().into_bytes(),
            status: 415,
            code: "unsupported_media_type",
            field: None,
        },
        Case {
            name: "one megabyte body",
            path: "/api/v1/orders",
            content_type: "application/json",
            body: format!(
                "{{\"customer_id\":\"{customer}\",\"pad\":\"{}\"}}",
                "x".repeat(1 << 20)
            )
            .into_bytes(),
            status: 413,
            code: "payload_too_large",
            field: None,
        },
        json_case("json array", "/api/v1/orders", json!([1, 2]), v, Some("$")),
        json_case(
            "wrong type",
            "/api/v1/stock-items",
            product(json!({"quantity": "5"})),
            v,
            Some("quantity"),
        ),
        json_case(
            "float quantity",
            "/api/v1/stock-items",
            product(json!({"quantity": 1.5})),
            v,
            Some("quantity"),
        ),
        json_case(
            "missing field",
            "/api/v1/orders",
            json!({"items": []}),
            v,
            Some("customer_id"),
        ),
        json_case(
            "unknown field",
            "/api/v1/stock-items",
            product(json!({"quantitiy": 5})),
            v,
            Some("quantitiy"),
        ),
        json_case(
            "bad sku",
            "/api/v1/stock-items",
            product(json!({"sku": "no spaces"})),
            v,
            Some("sku"),
        ),
        json_case(
            "blank name",
            "/api/v1/stock-items",
            product(json!({"name": "  "})),
            v,
            Some("name"),
        ),
        json_case(
            "bad kind",
            "/api/v1/stock-items",
            product(json!({"kind": "service"})),
            v,
            Some("kind"),
        ),
        json_case(
            "slot without start",
            "/api/v1/stock-items",
            product(json!({"kind": "time_slot"})),
            v,
            Some("starts_at"),
        ),
        json_case(
            "bad start",
            "/api/v1/stock-items",
            product(json!({"kind": "time_slot", "starts_at": "tomorrow"})),
            v,
            Some("starts_at"),
        ),
        json_case(
            "negative stock",
            "/api/v1/stock-items",
            product(json!({"quantity": -1})),
            v,
            Some("quantity"),
        ),
        json_case(
            "huge stock",
            "/api/v1/stock-items",
            product(json!({"quantity": 10_000_000_000_i64})),
            v,
            Some("quantity"),
        ),
        json_case(
            "bad currency",
            "/api/v1/stock-items",
            product(json!({"unit_price": {"amount": 1, "currency": "ZZZ"}})),
            v,
            Some("unit_price.currency"),
        ),
        json_case(
            "negative price",
            "/api/v1/stock-items",
            product(json!({"unit_price": {"amount": -1, "currency": "MXN"}})),
            v,
            Some("unit_price.amount"),
        ),
        json_case(
            "restock zero",
            "/api/v1/stock-items/GOOD-1/restock",
            json!({"quantity": 0}),
            v,
            Some("quantity"),
        ),
        json_case(
            "restock huge",
            "/api/v1/stock-items/GOOD-1/restock",
            json!({"quantity": 1001}),
            v,
            Some("quantity"),
        ),
        json_case(
            "restock negative",
            "/api/v1/stock-items/GOOD-1/restock",
            json!({"quantity": -5}),
            v,
            Some("quantity"),
        ),
        json_case(
            "bad customer id",
            "/api/v1/orders",
            json!({"customer_id": "bob", "items": [{"sku": "GOOD-1", "quantity": 1}]}),
            v,
            Some("customer_id"),
        ),
        json_case(
            "no items",
            "/api/v1/orders",
            json!({"customer_id": customer, "items": []}),
            v,
            Some("items"),
        ),
        json_case(
            "zero quantity",
            "/api/v1/orders",
            json!({"customer_id": customer, "items": [{"sku": "GOOD-1", "quantity": 0}]}),
            v,
            Some("items[0].quantity"),
        ),
        json_case(
            "huge quantity",
            "/api/v1/orders",
            json!({"customer_id": customer, "items": [{"sku": "GOOD-1", "quantity": 1_000_000}]}),
            v,
            Some("items[0].quantity"),
        ),
        json_case(
            "duplicate sku",
            "/api/v1/orders",
            json!({"customer_id": customer, "items": [{"sku": "GOOD-1", "quantity": 1}, {"sku": "good-1", "quantity": 1}]}),
            v,
            Some("items[1].sku"),
        ),
        json_case(
            "unknown sku",
            "/api/v1/orders",
            json!({"customer_id": customer, "items": [{"sku": "GOOD-1", "quantity": 1}, {"sku": "GHOST-9", "quantity": 1}]}),
            "unknown_sku",
            Some("items[1].sku"),
        ),
        json_case(
            "zero guests",
            "/api/v1/bookings",
            json!({"customer_id": customer, "slot_sku": "SLOT-1", "guests": 0}),
            v,
            Some("guests"),
        ),
        json_case(
            "null guests",
            "/api/v1/bookings",
            json!({"customer_id": customer, "slot_sku": "SLOT-1", "guests": null}),
            v,
            Some("guests"),
        ),
    ]
}

async fn send(app: &TestApp, case: &Case) -> reqwest::Response {
    app.post_raw(case.path, case.content_type, case.body.clone())
        .await
}

#[tokio::test]
async fn every_kind_of_bad_input_answers_4xx_problem_json_and_writes_no_event() {
    // Arrange
    let app = spawn_app().await;
    app.register_product("GOOD-1", 5).await;
    let before = app.event_count().await;

    for case in cases() {
        // Act
        let response = send(&app, &case).await;

        // Assert
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{}: {problem}", case.name);
        assert_eq!(content_type, "application/problem+json", "{}", case.name);
        assert_eq!(problem["code"], case.code, "{}: {problem}", case.name);
        assert_eq!(problem["status"], case.status, "{}", case.name);
        assert!(problem["correlation_id"].is_string(), "{}", case.name);
        if let Some(field) = case.field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                fields.contains(&field),
                "{}: expected {field} in {problem}",
                case.name
            );
        }
    }
    assert_eq!(
        app.event_count().await,
        before,
        "bad input must not write events"
    );
}

#[tokio::test]
async fn all_field_errors_are_reported_at_once() {
    let app = spawn_app().await;

    let problem: Value = app
        .post(
            "/api/v1/stock-items",
            &json!({"sku": "", "name": "", "kind": "x", "quantity": -1,
                    "unit_price": {"amount": -5, "currency": "usd"}}),
        )
        .await
        .json()
        .await
        .unwrap();

    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "sku",
        "name",
        "kind",
        "quantity",
        "unit_price.currency",
        "unit_price.amount",
    ] {
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() {
    let app = spawn_app().await;

    let missing = app.get("/api/v1/nothing-here").await;
    let wrong_method = app
        .client
        .put(format!("{}/api/v1/orders", app.address))
        .send()
        .await
        .unwrap();

    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );
}
