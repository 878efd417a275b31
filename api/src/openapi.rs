//! The OpenAPI 3 document (`GET /openapi.json`) built from the handlers' own types, and the
//! Swagger UI (`/docs`) that reads it.
//!
//! Handlers carry `#[utoipa::path]` with their success answers and the errors particular to
//! them; [`ProblemResponses`] then adds, in one place, the problem+json answers every
//! operation of a kind can give (bad input, auth, rate limit, unavailable), so the document
//! cannot forget one route's 429. Every schema is the API's own wire type ([`crate::views`],
//! the bodies of the routes, [`crate::problem::Problem`]): the document describes exactly what
//! the handlers serialize; the schema test and the Schemathesis run check it against real
//! answers.

use std::sync::LazyLock;

use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Header, HttpMethod, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required,
    ResponseBuilder, SecurityRequirement, Type,
};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::problem::{FieldError, Problem};
use crate::routes::{
    CancelBody, CommandAccepted, admin, audit, bookings, health, live, orders, payments,
    stock_items, webhook_endpoints, webhooks,
};
use crate::verifier::LastVerify;
use crate::views::audit::{
    AuditEventView, AuditStreamView, HistoryView, StateView, StatusChangeView, TraceNodeView,
    TraceRootView, TraceView,
};
use crate::views::operations::{
    DeadLetterView, ProjectionEntry, RebuildPhase, RebuildStarted, RebuildState, SagaStep,
    SagaView, VerifyColumn, VerifyDifference, VerifyReport,
};
use crate::views::outbound::{
    RegisteredEndpoint, WebhookAttemptView, WebhookDeliveryStatus, WebhookDeliveryView,
};
use crate::views::read::{
    BookingView, MoneySchema, OrderItemSchema, OrderView, Owned, Page, PaymentSummary, PaymentView,
    StockItemView,
};

/// The document, generated once.
static DOCUMENT: LazyLock<Document> = LazyLock::new(ApiDoc::openapi);

/// The OpenAPI document of every route in [`crate::routes::configure`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reserva",
        description = "Event-sourced commerce backend: stock items and time slots, orders, \
                       bookings and payments. Commands answer 202 with the id and the global \
                       position of their last event; reads accept `min_position` to wait \
                       (bounded) until the read model has caught up with a write.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        stock_items::register_stock_item,
        stock_items::list_stock_items,
        stock_items::get_stock_item,
        stock_items::restock,
        orders::place_order,
        orders::list_orders,
        orders::get_order,
        orders::cancel_order,
        audit::order_history,
        bookings::place_booking,
        bookings::list_bookings,
        bookings::get_booking,
        bookings::cancel_booking,
        audit::booking_history,
        payments::list_payments,
        live::order_events,
        live::booking_events,
        live::stock_item_events,
        payments::get_payment,
        admin::list_projections,
        admin::rebuild_projection,
        admin::verify_projection,
        admin::list_dead_letters,
        admin::retry_dead_letter,
        admin::skip_dead_letter,
        admin::get_saga,
        webhook_endpoints::register_endpoint,
        webhook_endpoints::list_deliveries,
        audit::aggregate_events,
        audit::trace,
        admin::metrics,
        webhooks::stripe,
        health::live,
        health::ready,
    ),
    components(schemas(
        Problem,
        FieldError,
        CommandAccepted<'static>,
        CancelBody,
        stock_items::RegisterStockItem,
        stock_items::Restock,
        orders::PlaceOrder,
        orders::ItemInput,
        bookings::PlaceBooking,
        MoneySchema,
        OrderItemSchema,
        PaymentSummary,
        OrderView,
        BookingView,
        StockItemView,
        PaymentView,
        Owned,
        Page<OrderView>,
        Page<BookingView>,
        Page<PaymentView>,
        Page<StockItemView>,
        RebuildPhase,
        ProjectionEntry,
        RebuildState,
        RebuildStarted,
        VerifyReport,
        VerifyDifference,
        VerifyColumn,
        LastVerify,
        DeadLetterView,
        SagaView,
        SagaStep,
        webhooks::WebhookReceipt,
        webhook_endpoints::RegisterEndpoint,
        webhook_endpoints::WebhookEventType,
        RegisteredEndpoint,
        WebhookDeliveryView,
        WebhookAttemptView,
        WebhookDeliveryStatus,
        Page<WebhookDeliveryView>,
        health::HealthStatus,
        AuditEventView,
        AuditStreamView,
        StateView,
        TraceView,
        TraceRootView,
        TraceNodeView,
        HistoryView,
        StatusChangeView,
    )),
    modifiers(&ProblemResponses),
    tags(
        (name = "stock", description = "Inventory and time slots"),
        (name = "orders", description = "Orders and their saga"),
        (name = "bookings", description = "Guests on a time slot"),
        (name = "payments", description = "Payments and the Stripe webhook"),
        (name = "admin", description = "Operations: projections, dead letters, sagas, webhook endpoints"),
        (name = "audit", description = "What happened, when, and what one request caused"),
        (name = "platform", description = "Health probes and metrics"),
    )
)]
pub struct ApiDoc;

/// The generated document (shared; building it walks every handler's description).
pub fn document() -> Document {
    DOCUMENT.clone()
}

/// `GET /openapi.json` and the Swagger UI under `/docs/` (with `/docs` redirected there).
pub fn service() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document())
}

/// Adds the problem+json answers shared by whole groups of operations, the bearer scheme, and
/// the security requirement of `/api/v1` and `/admin`. An answer a handler already documents
/// keeps the handler's description.
struct ProblemResponses;

/// Which problems an operation can answer, by where it lives and what it takes.
fn shared_problems(path: &str, method: &HttpMethod) -> Vec<(&'static str, &'static str)> {
    let secured = crate::routes::table::guarded(path).is_some();
    let command = matches!(method, HttpMethod::Post) && secured;
    let mut problems = Vec::new();
    if command || matches!(method, HttpMethod::Get) && secured {
        problems.push((
            "400",
            "Bad input: malformed JSON, invalid fields or parameters (`errors` names each)",
        ));
    }
    if secured {
        problems.push((
            "401",
            "Missing, expired, tampered or wrong-algorithm bearer token",
        ));
        problems.push((
            "403",
            "The token's role may not do this (or names another customer)",
        ));
    }
    if command {
        problems.push((
            "409",
            "The `Idempotency-Key` is still in flight with its first request \
             (`idempotency_key_in_progress`); retry after `retry-after` seconds",
        ));
        problems.push(("413", "The body is larger than the limit"));
        problems.push(("415", "The body is not application/json"));
        problems.push((
            "422",
            "Well-formed but unusable: an unknown SKU, or an Idempotency-Key reused with another body",
        ));
    }
    if path != "/webhooks/stripe" {
        problems.push((
            "429",
            "Rate limit reached; `retry-after` says when to try again",
        ));
    }
    if path != "/health/live" && path != "/metrics" {
        problems.push((
            "503",
            "Not available yet: the database is unreachable, or a read's `min_position` was not \
             reached within the bounded wait (`projection_behind`); retry later",
        ));
    }
    problems
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with `sub` and `role` (`customer` or `admin`); mint one with \
                         `reserva token --sub ID --role ROLE`",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                for (status, description) in shared_problems(path, &method) {
                    let answer = if status == "429" {
                        rate_limited(description)
                    } else {
                        problem(description)
                    };
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(answer);
                }
                let guarded = crate::routes::table::guarded(path).is_some();
                if matches!(method, HttpMethod::Post) && guarded {
                    operation
                        .parameters
                        .get_or_insert_with(Vec::new)
                        .push(RefOr::T(idempotency_key()));
                }
                if guarded {
                    operation.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                }
            }
        }
    }
}

/// The optional `Idempotency-Key` header of every command POST (`crate::idempotency`).
fn idempotency_key() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retry safe: the same key and body within 24 h get the first answer back \
             (`idempotent-replayed: true`) without running again; the same key with another \
             body is 422 `idempotency_key_reused`. Scoped to the caller.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::idempotency::MAX_KEY_LEN))
                .pattern(Some("^[ -~]+$")),
        ))
        .build()
}

/// The 429 problem, with the headers that say when to come back.
fn rate_limited(description: &str) -> RefOr<utoipa::openapi::Response> {
    let seconds = |what: &str| {
        let mut header = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
        header.description = Some(what.to_owned());
        header
    };
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .header(
                "retry-after",
                seconds("Seconds until the spent budget resets"),
            )
            .header(
                "x-ratelimit-limit",
                seconds("Requests the budget allows per window"),
            )
            .header(
                "x-ratelimit-remaining",
                seconds("Requests left in the window"),
            )
            .header(
                "x-ratelimit-reset",
                seconds("Seconds until the window resets"),
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

/// A problem+json answer.
pub fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}
