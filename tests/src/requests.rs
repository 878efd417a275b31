//! [`TestApp`]'s HTTP helpers (plain, keyed, raw, signed, bearer) and product registration.

use crate::{TestApp, WEBHOOK_SECRET};
use api::auth::Role;
use serde_json::Value;
use std::time::Duration;

impl TestApp {
    /// `POST` a JSON body to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST` a JSON body to `path` with an `Idempotency-Key` header.
    pub async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST` raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST /webhooks/stripe` with `body`, signed now with [`WEBHOOK_SECRET`] by the real
    /// scheme (the body is sent byte for byte as signed).
    pub async fn post_stripe_webhook(&self, body: &str) -> reqwest::Response {
        let signature = stripe_webhook::Webhook::generate_test_header(body, WEBHOOK_SECRET, None);
        self.client
            .post(format!("{}/webhooks/stripe", self.address))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }

    /// A token for `subject` with `role`, valid for an hour, signed with this server's secret
    /// (by the function `reserva token` uses). Panics when the server runs without auth.
    #[track_caller]
    pub fn token(&self, subject: &str, role: Role) -> String {
        let auth = self.settings.auth.as_ref().expect("a server with auth on");
        api::auth::mint(auth, subject, role, Duration::from_secs(3600)).expect("mint a token")
    }

    /// `POST` a JSON body to `path` with `Authorization: Bearer <token>`.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET` `path` with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// `GET` `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` once the read models have handled `position` (read-your-writes).
    pub async fn get_at(&self, path: &str, position: i64) -> reqwest::Response {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(&format!("{path}{sep}min_position={position}"))
            .await
    }

    /// `GET path`: its status and JSON body (`Null` when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers a product priced 1500 MXN; panics unless accepted.
    pub async fn register_product(&self, sku: &str, quantity: u32) {
        let response = self
            .post(
                "/api/v1/stock-items",
                &serde_json::json!({"sku": sku, "name": format!("Item {sku}"), "kind": "product",
                    "quantity": quantity, "low_stock_threshold": 1,
                    "unit_price": {"amount": 1500, "currency": "MXN"}}),
            )
            .await;
        assert_eq!(response.status(), 202, "register {sku}");
    }
}

/// A product registration as the command bus takes it (named `Item <sku>`, 1500 MXN), for
/// tests that write around HTTP.
pub fn register_product_command(
    sku: &str,
    quantity: u32,
    low_stock_threshold: u32,
) -> domain::stock_item::StockItemCommand {
    domain::stock_item::StockItemCommand::Register {
        sku: domain::Sku::parse(sku).expect("a valid sku"),
        name: format!("Item {sku}"),
        kind: domain::stock_item::StockKind::Product,
        quantity,
        low_stock_threshold,
        unit_price: domain::Money::new(1500, domain::Currency::parse("MXN").expect("MXN"))
            .expect("a price"),
    }
}
