//! Bad read parameters answer 400 naming the field.

use serde_json::Value;
use tests::spawn_app_without_sagas;
use uuid::Uuid;

#[tokio::test]
async fn bad_read_parameters_answer_400_naming_the_field() {
    let app = spawn_app_without_sagas().await;
    let id = Uuid::new_v4();
    let mut cases: Vec<(String, &str)> = [
        ("/api/v1/orders?page=0", "page"),
        ("/api/v1/orders?page=x", "page"),
        ("/api/v1/orders?per_page=1000", "per_page"),
        ("/api/v1/orders?per_page=0", "per_page"),
        ("/api/v1/orders?min_position=-1", "min_position"),
        ("/api/v1/orders?customer=not-a-uuid", "customer"),
        ("/api/v1/orders?status=NOPE", "status"),
        ("/api/v1/bookings?customer=nope", "customer"),
        ("/api/v1/bookings?slot=no%20spaces", "slot"),
        ("/api/v1/stock-items?low_stock=maybe", "low_stock"),
        ("/api/v1/stock-items?kind=x", "kind"),
        ("/api/v1/stock-items?starts_from=yesterday", "starts_from"),
        (
            "/api/v1/stock-items?starts_before=2026-13-01",
            "starts_before",
        ),
        ("/api/v1/stock-items?per_page=101", "per_page"),
        ("/api/v1/stock-items/ANY?min_position=soon", "min_position"),
    ]
    .map(|(path, field)| (path.to_owned(), field))
    .to_vec();
    for (route, value) in [("orders", "-5"), ("bookings", "1.5"), ("payments", "x")] {
        cases.push((
            format!("/api/v1/{route}/{id}?min_position={value}"),
            "min_position",
        ));
    }

    for (path, field) in cases {
        let response = app.get(&path).await;

        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "validation_failed", "{path}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{path}: {problem}");
    }
}
