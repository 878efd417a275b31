//! The OpenAPI document at `/openapi.json` and the Swagger UI at `/docs`: every route is
//! described, and the documented schemas hold for real answers.

use serde_json::{Value, json};
use tests::{TestApp, eventually, spawn_app};
use uuid::Uuid;

/// Every route `api::routes::configure` registers, as (method, path template).
const ROUTES: [(&str, &str); 34] = [
    ("post", "/api/v1/stock-items"),
    ("get", "/api/v1/stock-items"),
    ("get", "/api/v1/stock-items/{sku}"),
    ("post", "/api/v1/stock-items/{sku}/restock"),
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/orders/{id}"),
    ("post", "/api/v1/orders/{id}/cancel"),
    ("get", "/api/v1/orders/{id}/history"),
    ("post", "/api/v1/bookings"),
    ("get", "/api/v1/bookings"),
    ("get", "/api/v1/bookings/{id}"),
    ("post", "/api/v1/bookings/{id}/cancel"),
    ("get", "/api/v1/bookings/{id}/history"),
    ("get", "/api/v1/payments"),
    ("get", "/api/v1/orders/{id}/events"),
    ("get", "/api/v1/bookings/{id}/events"),
    ("get", "/api/v1/stock-items/{sku}/events"),
    ("get", "/api/v1/payments/{id}"),
    ("get", "/admin/projections"),
    ("post", "/admin/projections/{name}/rebuild"),
    ("get", "/admin/projections/{name}/verify"),
    ("get", "/admin/dead-letters"),
    ("post", "/admin/dead-letters/{id}/retry"),
    ("post", "/admin/dead-letters/{id}/skip"),
    ("get", "/admin/sagas/{id}"),
    ("post", "/admin/webhook-endpoints"),
    ("get", "/admin/webhook-endpoints/{id}/deliveries"),
    ("get", "/admin/audit/traces/{id}"),
    ("get", "/admin/audit/{type}/{id}"),
    ("get", "/metrics"),
    ("post", "/webhooks/stripe"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
];

pub(crate) async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("the document is JSON")
}

/// Follows `$ref`s into `components/schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "{reference} is not in the document");
            resolve(doc, target)
        }
        None => schema,
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

/// Checks `value` against `schema`: types, every required property present, no property the
/// schema does not describe, recursively. The error names the JSON path.
pub(crate) fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        // A flattened struct: the union of the parts' properties.
        for part in all {
            let part = resolve(doc, part);
            let mut part = part.clone();
            part.as_object_mut()
                .map(|o| o.remove("additionalProperties"));
            conforms_loose(doc, &part, value, at)?;
        }
        return Ok(());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema[key].as_array() {
            return if branches.iter().any(|b| conforms(doc, b, value, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: {value} matches no branch of {key}"))
            };
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        return Err(format!("{at}: {value} is not of type {types:?}"));
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: required property {name} is missing"));
            }
        }
        for (name, field) in object {
            let Some(property) = properties.get(name) else {
                return Err(format!("{at}: property {name} is not documented"));
            };
            conforms(doc, property, field, &format!("{at}.{name}"))?;
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Like [`conforms`] for one part of an `allOf`: only its own properties are checked.
fn conforms_loose(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(object) = value.as_object() else {
        return conforms(doc, schema, value, at);
    };
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if !object.contains_key(name) {
            return Err(format!("{at}: required property {name} is missing"));
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            if let Some(field) = object.get(name) {
                conforms(doc, property, field, &format!("{at}.{name}"))?;
            }
        }
    }
    Ok(())
}

/// The schema documented for `status` of `method path` in `content_type`.
pub(crate) fn response_schema<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: &str,
    content_type: &str,
) -> &'a Value {
    let schema =
        &doc["paths"][path][method]["responses"][status]["content"][content_type]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no {status} {content_type} answer"
    );
    schema
}

#[tokio::test]
async fn the_document_is_openapi_3_and_describes_every_route() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let doc = document(&app).await;

    // Assert
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");
    assert_eq!(doc["info"]["title"], "Reserva");
    let mut missing = Vec::new();
    for (method, path) in ROUTES {
        let operation = &doc["paths"][path][method];
        if operation.is_null() {
            missing.push(format!("{method} {path}"));
            continue;
        }
        let secured = path.starts_with("/api/v1") || path.starts_with("/admin");
        assert_eq!(
            !operation["security"].is_null(),
            secured,
            "{method} {path}: bearer auth applies exactly to /api/v1 and /admin"
        );
        if secured {
            response_schema(&doc, method, path, "401", "application/problem+json");
        }
        let takes_key = operation["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
        assert_eq!(
            takes_key,
            method == "post" && secured,
            "{method} {path}: Idempotency-Key is documented on exactly the command POSTs"
        );
        if path != "/webhooks/stripe" {
            let limited = &operation["responses"]["429"];
            assert!(
                limited["headers"]["retry-after"].is_object()
                    && limited["headers"]["x-ratelimit-reset"].is_object(),
                "{method} {path}: 429 documents retry-after and x-ratelimit-*"
            );
        }
    }
    assert!(missing.is_empty(), "undocumented routes: {missing:?}");
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "no operation the API does not have"
    );
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
    // The raw-body webhook takes its signature header; commands accept JSON bodies.
    let webhook = &doc["paths"]["/webhooks/stripe"]["post"];
    assert!(
        webhook["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Stripe-Signature" && p["in"] == "header"),
        "the webhook documents Stripe-Signature"
    );
    response_schema(&doc, "get", "/metrics", "200", "text/plain");
    response_schema(&doc, "post", "/api/v1/orders", "202", "application/json");
}

// Long on purpose: one flow produces every kind of answer, each checked against its schema
// as it comes.
#[tokio::test]
async fn real_answers_match_their_documented_schemas() {
    // Arrange: an order that went through its saga, so it has a payment.
    let app = spawn_app().await;
    let doc = document(&app).await;
    app.register_product("DOC-MUG", 5).await;
    let placed = app
        .post(
            "/api/v1/orders",
            &json!({"customer_id": Uuid::new_v4(), "items": [{"sku": "DOC-MUG", "quantity": 2}]}),
        )
        .await;
    assert_eq!(placed.status(), 202);
    let correlation = placed.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let accepted: Value = placed.json().await.unwrap();
    let schema = response_schema(&doc, "post", "/api/v1/orders", "202", "application/json");
    conforms(&doc, schema, &accepted, "$").unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/orders/{id}");

    // Act
    let (app_ref, path_ref) = (&app, &path);
    let order: Value = eventually("the order is paid", || async move {
        let body: Value = app_ref.get(path_ref).await.json().await.ok()?;
        (body["status"] == "COMPLETED").then_some(body)
    })
    .await;

    // Assert: each required property of OrderView (and of its payment and lines) is there.
    let schema = response_schema(
        &doc,
        "get",
        "/api/v1/orders/{id}",
        "200",
        "application/json",
    );
    let view = resolve(&doc, schema);
    let required: Vec<&str> = view["required"]
        .as_array()
        .expect("OrderView lists required properties")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in [
        "id",
        "customer_id",
        "status",
        "items",
        "total",
        "updated_at",
    ] {
        assert!(required.contains(&field), "OrderView requires {field}");
    }
    for field in &required {
        assert!(
            order.get(*field).is_some(),
            "the order answer lacks {field}"
        );
    }
    assert!(
        order["payment"].is_object(),
        "a paid order shows its payment"
    );
    conforms(&doc, schema, &order, "$").unwrap();

    // The other views and lists, and a problem.
    let payment_id = order["payment"]["id"].as_str().unwrap();
    let answers = [
        (
            "get",
            "/api/v1/stock-items/{sku}",
            "/api/v1/stock-items/DOC-MUG".to_owned(),
        ),
        (
            "get",
            "/api/v1/stock-items",
            "/api/v1/stock-items".to_owned(),
        ),
        ("get", "/api/v1/orders", "/api/v1/orders".to_owned()),
        (
            "get",
            "/api/v1/payments/{id}",
            format!("/api/v1/payments/{payment_id}"),
        ),
        ("get", "/admin/sagas/{id}", format!("/admin/sagas/{id}")),
        (
            "get",
            "/api/v1/orders/{id}/history",
            format!("/api/v1/orders/{id}/history"),
        ),
        (
            "get",
            "/admin/audit/{type}/{id}",
            format!("/admin/audit/order/{id}?as_of=2"),
        ),
        (
            "get",
            "/admin/audit/traces/{id}",
            format!("/admin/audit/traces/{correlation}"),
        ),
        (
            "get",
            "/admin/projections/{name}/verify",
            "/admin/projections/stock_items/verify".to_owned(),
        ),
        ("get", "/admin/projections", "/admin/projections".to_owned()),
        (
            "get",
            "/admin/dead-letters",
            "/admin/dead-letters?all=true".to_owned(),
        ),
        ("get", "/health/ready", "/health/ready".to_owned()),
    ];
    for (method, template, url) in answers {
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let body: Value = response.json().await.unwrap();
        let schema = response_schema(&doc, method, template, "200", "application/json");
        conforms(&doc, schema, &body, "$").unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let missing = app.get(&format!("/api/v1/orders/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = missing.json().await.unwrap();
    let schema = response_schema(
        &doc,
        "get",
        "/api/v1/orders/{id}",
        "404",
        "application/problem+json",
    );
    conforms(&doc, schema, &problem, "$").unwrap();
    let invalid = app
        .post("/api/v1/orders", &json!({"customer_id": "x", "items": []}))
        .await;
    assert_eq!(invalid.status(), 400);
    let problem: Value = invalid.json().await.unwrap();
    assert!(problem["errors"].is_array(), "field errors are listed");
    let schema = response_schema(
        &doc,
        "post",
        "/api/v1/orders",
        "400",
        "application/problem+json",
    );
    conforms(&doc, schema, &problem, "$").unwrap();
}

#[tokio::test]
async fn docs_serves_the_swagger_ui() {
    // Arrange
    let app = spawn_app().await;

    // Act: `/docs` leads to `/docs/`, which is the UI's HTML page.
    let response = app.get("/docs").await;

    // Assert
    assert_eq!(response.status(), 200);
    assert!(
        response.url().path().starts_with("/docs/"),
        "redirected to {}",
        response.url()
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "the Swagger UI page");
    let config = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        config.contains("/openapi.json"),
        "the UI reads /openapi.json"
    );
}
