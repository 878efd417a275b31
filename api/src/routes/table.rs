//! The route table: every route, and the policy each part of it runs under, in one place.
//!
//! The table itself says who may call what, zero2prod-style: the platform endpoints (the
//! Stripe webhook, probes, metrics, the API description) sit outside the guarded scopes and
//! need no token nor spend any budget; [`GUARDED`] scopes verify the caller, spend its
//! overall budget and replay command `POST`s by `Idempotency-Key`; `/admin` and the
//! stock-item writes also need role admin; order and booking creation spend budgets of their
//! own. No middleware looks at a path to decide. The OpenAPI document reads [`GUARDED`] too.

use actix_web::middleware::from_fn;
use actix_web::web;

use super::{
    admin, audit, bookings, health, live, orders, payments, resource, stock_items,
    webhook_endpoints, webhooks,
};
use crate::auth::guard;
use crate::configuration::RateLimits;
use crate::idempotency;
use crate::problem::ApiError;
use crate::rate_limit::{self, Limit, Windows};

/// A guarded scope of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guarded {
    /// Its path prefix.
    pub prefix: &'static str,
    /// Whether every route of it needs role admin (else only those marked so).
    pub admin_only: bool,
}

/// The guarded scopes: bearer token (when auth is on), the overall budget, idempotency keys
/// on `POST`.
pub const GUARDED: [Guarded; 2] = [
    Guarded {
        prefix: "/api/v1",
        admin_only: false,
    },
    Guarded {
        prefix: "/admin",
        admin_only: true,
    },
];

/// The guarded scope `path` (a documented route) belongs to, if any.
pub fn guarded(path: &str) -> Option<&'static Guarded> {
    GUARDED.iter().find(|g| {
        path.strip_prefix(g.prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Routes with a budget of their own, besides the overall and the role's.
pub const BUDGETED: [(&str, &str, Limit); 4] = [
    ("post", "/api/v1/orders", Limit::Orders),
    ("post", "/api/v1/bookings", Limit::Bookings),
    ("post", "/api/v1/orders/{id}/cancel", Limit::Sensitive),
    ("post", "/api/v1/bookings/{id}/cancel", Limit::Sensitive),
];

/// Routes of `/api/v1` only admins may call (stock-item writes).
pub const ADMIN_ROUTES: [(&str, &str); 2] = [
    ("post", "/api/v1/stock-items"),
    ("post", "/api/v1/stock-items/{sku}/restock"),
];

/// What the guarded scopes are wrapped with, built once per server and shared by its
/// workers (the budgets' counters must be one for all of them).
#[derive(Clone)]
pub struct Guards {
    /// The rate limiters' counters.
    pub windows: Windows,
    /// The budgets; `None` turns limiting off.
    pub limits: Option<RateLimits>,
    /// `false` on a `--role workers` instance: only probes, `/metrics` and `/webhooks/stripe`
    /// (its simulated gateway delivers there, and Stripe may be pointed at any instance).
    pub serves_api: bool,
}

/// Registers every route under its policy.
pub fn configure(cfg: &mut web::ServiceConfig, guards: &Guards) {
    cfg.app_data(web::QueryConfig::default().error_handler(|error, _| {
        ApiError::bad_request("malformed_query", error.to_string()).into()
    }));
    if guards.serves_api {
        cfg.service(api(guards))
            .service(admin_scope(guards))
            // GET /openapi.json and the Swagger UI at /docs/ (/docs redirects there).
            .service(web::redirect("/docs", "/docs/"))
            .service(crate::openapi::service());
    }
    cfg.service(resource("/metrics").get(admin::metrics))
        .service(
            resource("/webhooks/stripe")
                .app_data(web::PayloadConfig::new(webhooks::MAX_BODY))
                .post(webhooks::stripe),
        )
        .service(web::resource("/health/live").get(health::live))
        .service(web::resource("/health/ready").get(health::ready));
}

/// A guarded scope: the last `wrap` runs first, so the caller is verified before its budget
/// is spent, and a refused request claims no idempotency key.
macro_rules! guarded {
    ($scope:expr, $guards:expr) => {
        $scope
            .wrap(from_fn(idempotency::middleware))
            .wrap(rate_limit::overall(&$guards.windows, $guards.limits))
            .wrap(rate_limit::by_role(&$guards.windows, $guards.limits))
            .wrap(from_fn(guard::authenticate))
            .default_service(web::to(super::not_found))
    };
}

fn api(guards: &Guards) -> impl actix_web::dev::HttpServiceFactory + use<> {
    let budget = |limit| rate_limit::route(&guards.windows, guards.limits, limit);
    let admin = || from_fn(guard::require_admin);
    guarded!(
        web::scope(GUARDED[0].prefix)
            .service(
                resource("/stock-items")
                    .route(
                        web::post()
                            .to(stock_items::register_stock_item)
                            .wrap(admin()),
                    )
                    .get(stock_items::list_stock_items),
            )
            .service(resource("/stock-items/{sku}").get(stock_items::get_stock_item))
            .service(resource("/stock-items/{sku}/events").get(live::stock_item_events))
            .service(
                resource("/stock-items/{sku}/restock")
                    .route(web::post().to(stock_items::restock).wrap(admin())),
            )
            .service(
                resource("/orders")
                    .route(
                        web::post()
                            .to(orders::place_order)
                            .wrap(budget(Limit::Orders)),
                    )
                    .get(orders::list_orders),
            )
            .service(resource("/orders/{id}").get(orders::get_order))
            .service(resource("/orders/{id}/events").get(live::order_events))
            .service(resource("/orders/{id}/history").get(audit::order_history))
            .service(
                resource("/orders/{id}/cancel").route(
                    web::post()
                        .to(orders::cancel_order)
                        .wrap(budget(Limit::Sensitive)),
                ),
            )
            .service(
                resource("/bookings")
                    .route(
                        web::post()
                            .to(bookings::place_booking)
                            .wrap(budget(Limit::Bookings)),
                    )
                    .get(bookings::list_bookings),
            )
            .service(resource("/bookings/{id}").get(bookings::get_booking))
            .service(resource("/bookings/{id}/events").get(live::booking_events))
            .service(resource("/bookings/{id}/history").get(audit::booking_history))
            .service(
                resource("/bookings/{id}/cancel").route(
                    web::post()
                        .to(bookings::cancel_booking)
                        .wrap(budget(Limit::Sensitive)),
                ),
            )
            .service(resource("/payments").get(payments::list_payments))
            .service(resource("/payments/{id}").get(payments::get_payment)),
        guards
    )
}

fn admin_scope(guards: &Guards) -> impl actix_web::dev::HttpServiceFactory + use<> {
    guarded!(
        web::scope(GUARDED[1].prefix)
            .wrap(from_fn(guard::require_admin))
            .service(resource("/projections").get(admin::list_projections))
            .service(resource("/projections/{name}/rebuild").post(admin::rebuild_projection))
            .service(resource("/projections/{name}/verify").get(admin::verify_projection))
            .service(resource("/dead-letters").get(admin::list_dead_letters))
            .service(resource("/dead-letters/{id}/retry").post(admin::retry_dead_letter))
            .service(resource("/dead-letters/{id}/skip").post(admin::skip_dead_letter))
            .service(resource("/sagas/{id}").get(admin::get_saga))
            .service(resource("/webhook-endpoints").post(webhook_endpoints::register_endpoint),)
            .service(
                resource("/webhook-endpoints/{id}/deliveries")
                    .get(webhook_endpoints::list_deliveries),
            )
            // Before `/audit/{type}/{id}`, which would take `traces` for a type.
            .service(resource("/audit/traces/{id}").get(audit::trace))
            .service(resource("/audit/{type}/{id}").get(audit::aggregate_events)),
        guards
    )
}
