//! One virtual customer: a closed loop of think, act, wait for the end state, maybe follow up.
//!
//! An act is an order or a booking, sometimes one the simulated gateway declines, sometimes
//! cancelled at once (racing its saga) or after it completed (a refund), sometimes followed by
//! a duplicate webhook about its payment. Requests go round-robin over the instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::catalogue::Catalogue;
use crate::flow::Flow;
use crate::stats::Samples;
use crate::webhook;

/// What every customer shares.
pub struct World {
    /// HTTP client (keep-alive pool shared by all customers).
    pub client: reqwest::Client,
    /// Base URLs of the instances.
    pub urls: Vec<String>,
    /// Round-robin cursor over `urls`.
    pub next: AtomicUsize,
    /// The SKUs.
    pub catalogue: Catalogue,
    /// Set when the run's time is up: customers finish the flow in hand and stop.
    pub stop: AtomicBool,
    /// The service's webhook secret; `None` sends no duplicate webhooks.
    pub secret: Option<String>,
    /// Pause between two polls of one flow.
    pub poll: Duration,
    /// Longest wait for a flow's end state.
    pub wait: Duration,
    /// Mean pause between two acts of one customer.
    pub think: Duration,
}

impl World {
    /// The next instance's base URL.
    pub fn url(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.urls[i % self.urls.len()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    Never,
    AtOnce,
    AfterPaid,
}

struct Plan {
    flow: Flow,
    declined: bool,
    cancel: Cancel,
    duplicate: bool,
}

/// A virtual customer; `run` returns what it measured.
pub struct Customer {
    id: Uuid,
    world: Arc<World>,
    rng: StdRng,
    samples: Samples,
}

impl Customer {
    /// Customer `n` of the run (its random choices are seeded by `n`).
    pub fn new(n: u64, world: Arc<World>) -> Self {
        Self {
            id: Uuid::new_v4(),
            world,
            rng: StdRng::seed_from_u64(n),
            samples: Samples::default(),
        }
    }

    /// Acts until the world stops.
    pub async fn run(mut self) -> Samples {
        let think = self.world.think.as_millis().max(1) as u64;
        // Staggered start, so the first second is not one burst of every customer.
        let first = self.rng.random_range(0..think * 2);
        tokio::time::sleep(Duration::from_millis(first)).await;
        while !self.world.stop.load(Ordering::Relaxed) {
            let plan = self.plan();
            self.act(plan).await;
            let pause = self.rng.random_range(0..think * 2);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self.samples
    }

    fn plan(&mut self) -> Plan {
        let flow = if self.rng.random_bool(0.6) {
            Flow::Order
        } else {
            Flow::Booking
        };
        let cancel = match self.rng.random_range(0..100) {
            0..10 => Cancel::AtOnce,
            10..20 => Cancel::AfterPaid,
            _ => Cancel::Never,
        };
        Plan {
            flow,
            declined: self.rng.random_bool(0.15),
            cancel,
            duplicate: self.world.secret.is_some() && self.rng.random_bool(0.25),
        }
    }

    async fn act(&mut self, plan: Plan) {
        let flow = plan.flow;
        let sent = Instant::now();
        let Some((id, position)) = self.place(&plan).await else {
            return;
        };
        self.samples
            .placed
            .push((id.clone(), flow.name(), chrono::Utc::now() - sent.elapsed()));
        if plan.cancel == Cancel::AtOnce {
            let pause = self.rng.random_range(0..30);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            self.cancel(flow, &id).await;
        }
        let Some(view) = self.wait_for(flow, &id, position, flow.ends()).await else {
            *self.samples.unfinished.entry(flow.name()).or_default() += 1;
            return;
        };
        let status = view["status"].as_str().unwrap_or_default().to_owned();
        self.samples.ended(flow.name(), &status, sent.elapsed());
        if plan.duplicate {
            self.duplicate_webhook(&view).await;
        }
        if plan.cancel == Cancel::AfterPaid && status == flow.success() {
            let asked = Instant::now();
            self.cancel(flow, &id).await;
            let label = match flow {
                Flow::Order => "order cancel→refund",
                Flow::Booking => "booking cancel→refund",
            };
            match self.wait_for(flow, &id, 0, &["REFUNDED"]).await {
                Some(_) => self.samples.ended(label, "REFUNDED", asked.elapsed()),
                None => *self.samples.unfinished.entry(label).or_default() += 1,
            }
        }
    }

    /// POSTs the order or booking: its id and the position of its first event.
    async fn place(&mut self, plan: &Plan) -> Option<(String, i64)> {
        let catalogue = &self.world.catalogue;
        let body = match (plan.flow, plan.declined) {
            (Flow::Order, true) => {
                let sku = Catalogue::pick(&catalogue.declined_products, &mut self.rng);
                json!({"customer_id": self.id, "items": [{"sku": sku, "quantity": 1}]})
            }
            (Flow::Order, false) => {
                let first = Catalogue::pick(&catalogue.products, &mut self.rng).to_owned();
                let second = Catalogue::pick(&catalogue.products, &mut self.rng).to_owned();
                let mut items =
                    vec![json!({"sku": first, "quantity": self.rng.random_range(1..=2)})];
                if second != first && self.rng.random_bool(0.3) {
                    items.push(json!({"sku": second, "quantity": 1}));
                }
                json!({"customer_id": self.id, "items": items})
            }
            (Flow::Booking, true) => {
                let sku = Catalogue::pick(&catalogue.declined_slots, &mut self.rng);
                json!({"customer_id": self.id, "slot_sku": sku, "guests": 1})
            }
            (Flow::Booking, false) => {
                let sku = Catalogue::pick(&catalogue.slots, &mut self.rng);
                let guests = self.rng.random_range(1..=3);
                json!({"customer_id": self.id, "slot_sku": sku, "guests": guests})
            }
        };
        let endpoint = match plan.flow {
            Flow::Order => "POST /orders",
            Flow::Booking => "POST /bookings",
        };
        let url = format!("{}/api/v1/{}", self.world.url(), plan.flow.path());
        let request = self.world.client.post(url).json(&body);
        let (status, accepted) = self.send(endpoint, request).await?;
        if status != 202 {
            return None;
        }
        Some((
            accepted["id"].as_str()?.to_owned(),
            accepted["position"].as_i64()?,
        ))
    }

    async fn cancel(&mut self, flow: Flow, id: &str) {
        let endpoint = match flow {
            Flow::Order => "POST /orders/{id}/cancel",
            Flow::Booking => "POST /bookings/{id}/cancel",
        };
        let url = format!("{}/api/v1/{}/{id}/cancel", self.world.url(), flow.path());
        let request = self
            .world
            .client
            .post(url)
            .json(&json!({"reason": "storm"}));
        self.send(endpoint, request).await;
    }

    /// Polls the flow until its status is one of `ends`; the view, or `None` after the wait.
    /// Polls carry the POST's `min_position` (free once reached), so the first waits for the
    /// read model rather than answer 404; a `position` of 0 sends none.
    async fn wait_for(
        &mut self,
        flow: Flow,
        id: &str,
        position: i64,
        ends: &[&str],
    ) -> Option<Value> {
        let endpoint = match flow {
            Flow::Order => "GET /orders/{id}",
            Flow::Booking => "GET /bookings/{id}",
        };
        let deadline = Instant::now() + self.world.wait;
        while Instant::now() < deadline {
            let mut url = format!("{}/api/v1/{}/{id}", self.world.url(), flow.path());
            if position > 0 {
                url.push_str(&format!("?min_position={position}"));
            }
            let request = self.world.client.get(url);
            if let Some((200, view)) = self.send(endpoint, request).await
                && view["status"].as_str().is_some_and(|s| ends.contains(&s))
            {
                return Some(view);
            }
            tokio::time::sleep(self.world.poll).await;
        }
        None
    }

    /// Sends the ended flow's last payment event again, twice, as Stripe redelivers.
    async fn duplicate_webhook(&mut self, view: &Value) {
        let (Some(secret), Some(payment_id)) =
            (self.world.secret.clone(), view["payment"]["id"].as_str())
        else {
            return;
        };
        let url = format!("{}/api/v1/payments/{payment_id}", self.world.url());
        let request = self.world.client.get(url);
        let Some((200, payment)) = self.send("GET /payments/{id}", request).await else {
            return;
        };
        let paid = match payment["status"].as_str() {
            Some("succeeded" | "refunded") => true,
            Some("failed") => false,
            _ => return,
        };
        let Some(known) = webhook::known_payment(&payment) else {
            return;
        };
        let body = webhook::intent_event(&known, paid);
        for _ in 0..2 {
            let signature = webhook::signature(&secret, &body, chrono::Utc::now().timestamp());
            let request = self
                .world
                .client
                .post(format!("{}/webhooks/stripe", self.world.url()))
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .body(body.clone());
            let status = self
                .send("POST /webhooks/stripe (dup)", request)
                .await
                .map_or(0, |(s, _)| s);
            *self.samples.duplicates.entry(status).or_default() += 1;
        }
    }

    /// Sends `request`, recording its latency under `endpoint`: status and JSON body (`Null`
    /// when not JSON), or `None` when no answer came.
    async fn send(
        &mut self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, Value)> {
        let started = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                self.samples.request(endpoint, status, started.elapsed());
                Some((status, body))
            }
            Err(_) => {
                self.samples.request(endpoint, 0, started.elapsed());
                None
            }
        }
    }
}
