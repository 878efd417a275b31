//! The OpenAPI 3 document (`GET /openapi.json`) built from the handlers' own types, and the
//! Swagger UI (`/docs`) that reads it.
//!
//! Handlers carry `#[utoipa::path]` with their success answers and the errors particular to
//! them; [`ProblemResponses`] then adds, in one place, the problem+json answers every
//! operation of a kind can give (bad input, auth, rate limit, unavailable), so the document
//! cannot forget one route's 429. Types the API does not own (the saga and dead-letter rows
//! of `commands`, the problem body of [`crate::problem`]) are mirrored here field for field;
//! the schema test and the Schemathesis run check the mirrors against real answers.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use projections::queries::{
    BookingView, OrderView, Owned, Page, PaymentSummary, PaymentView, StockItemView,
};
use projections::rebuild::Phase;
use projections::schema::{MoneySchema, OrderItemSchema};
use projections::status::ProjectionStatus;
use serde::Serialize;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Header, HttpMethod, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required,
    ResponseBuilder, SecurityRequirement, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use crate::routes::{
    CancelBody, CommandAccepted, admin, bookings, health, orders, payments, stock_items, webhooks,
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
        bookings::place_booking,
        bookings::list_bookings,
        bookings::get_booking,
        bookings::cancel_booking,
        payments::get_payment,
        admin::list_projections,
        admin::rebuild_projection,
        admin::verify_projection,
        admin::list_dead_letters,
        admin::retry_dead_letter,
        admin::skip_dead_letter,
        admin::get_saga,
        admin::metrics,
        webhooks::stripe,
        health::live,
        health::ready,
    ),
    components(schemas(
        Problem,
        ProblemFieldError,
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
        Page<StockItemView>,
        ProjectionStatus,
        Phase,
        ProjectionEntry,
        RebuildState,
        RebuildStarted,
        admin::VerifyReport,
        admin::VerifyDifference,
        admin::VerifyColumn,
        crate::verifier::LastVerify,
        DeadLetter,
        SagaView,
        SagaStep,
        WebhookReceipt,
        HealthStatus,
    )),
    modifiers(&ProblemResponses),
    tags(
        (name = "stock", description = "Inventory and time slots"),
        (name = "orders", description = "Orders and their saga"),
        (name = "bookings", description = "Guests on a time slot"),
        (name = "payments", description = "Payments and the Stripe webhook"),
        (name = "admin", description = "Operations: projections, dead letters, sagas"),
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

/// The body of every error answer, exactly as [`crate::problem::ApiError`] writes it
/// (`application/problem+json`, RFC 9457).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `/problems/<code with dashes>`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation-failed")]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Bad Request")]
    title: String,
    /// The HTTP status.
    #[schema(minimum = 100, maximum = 599, example = 400)]
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// Stable machine code clients branch on (`validation_failed`, `insufficient_stock`, …).
    #[schema(example = "validation_failed")]
    code: String,
    /// Every invalid field (only when some are).
    errors: Option<Vec<ProblemFieldError>>,
    /// The request's correlation id (from `X-Correlation-ID`, or new).
    correlation_id: Option<String>,
}

/// One invalid input field of a [`Problem`].
#[derive(Serialize, ToSchema)]
#[schema(as = FieldError)]
#[allow(dead_code)]
pub struct ProblemFieldError {
    /// JSON path of the field, e.g. `items[0].quantity`.
    field: String,
    /// What is wrong with it.
    message: String,
}

/// One projection in `GET /admin/projections`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProjectionEntry {
    /// Position, lag and open dead letters.
    #[serde(flatten)]
    status: ProjectionStatus,
    /// Whether this process holds the projection's runner lock and has started.
    running_here: bool,
    /// The latest rebuild started by this process, if any.
    rebuild: Option<RebuildState>,
    /// The latest verify run by this process (scheduled or over HTTP), if any.
    last_verify: Option<crate::verifier::LastVerify>,
}

/// A rebuild's progress as the admin API shows it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RebuildState {
    /// Current phase.
    phase: Phase,
    /// Events applied to the shadow table so far.
    applied: u64,
    /// Events of the model's type when the rebuild started.
    total: u64,
    /// Why it failed.
    error: Option<String>,
}

/// `202` of `POST /admin/projections/{name}/rebuild`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RebuildStarted {
    /// The projection being rebuilt.
    projection: String,
    /// Where to follow its progress (`/admin/projections`).
    status: String,
}

/// A parked or queued event of a subscription.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeadLetter {
    /// Its id (for retry and skip).
    id: i64,
    /// The subscription that could not handle it.
    subscription: String,
    /// The event's aggregate type.
    aggregate_type: String,
    /// The event's aggregate id.
    aggregate_id: String,
    /// The event's global position.
    global_position: i64,
    /// The event's type.
    event_type: String,
    /// `retrying` (tried again at `next_attempt_at`), `parked` (out of tries, until an
    /// operator retries or skips it), `waiting` (behind one of those), `resolved`, `skipped`
    /// or `superseded`.
    status: String,
    /// `retry` or `skip`, asked for and not yet carried out.
    #[schema(required)]
    requested_action: Option<String>,
    /// Tries so far.
    attempts: i32,
    /// When a `retrying` letter is tried next.
    #[schema(required)]
    next_attempt_at: Option<DateTime<Utc>>,
    /// The last error.
    #[schema(required)]
    error: Option<String>,
    /// When it was parked or queued.
    created_at: DateTime<Utc>,
    /// Last change.
    updated_at: DateTime<Utc>,
}

/// An order's or booking's saga, its state and every step it took.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SagaView {
    /// The order's or booking's id.
    id: Uuid,
    /// `order_saga` or `booking_saga`.
    saga_type: String,
    /// Current state.
    state: String,
    /// Everything it remembers.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// Steps so far.
    version: i32,
    /// Its payment, once created.
    #[schema(required)]
    payment_id: Option<Uuid>,
    /// First handled event.
    created_at: DateTime<Utc>,
    /// Last handled event.
    updated_at: DateTime<Utc>,
    /// Every step, oldest first.
    history: Vec<SagaStep>,
}

/// One step of a saga's history.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SagaStep {
    /// 1-based.
    step: i32,
    /// The event's global position.
    global_position: i64,
    /// The event's type.
    event_type: String,
    /// The state after it.
    state: String,
    /// Commands and provider calls with their outcomes.
    #[schema(value_type = Vec<Object>)]
    commands: serde_json::Value,
    /// When the step was stored.
    recorded_at: DateTime<Utc>,
}

/// `200` of `POST /webhooks/stripe`: applied (`payment_id`, `position`) or ignored (`ignored`
/// says why: a duplicate, an event type Reserva does not act on, …).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookReceipt {
    /// Always `true`: Stripe stops delivering.
    received: bool,
    /// The payment the event changed.
    payment_id: Option<Uuid>,
    /// Global position of the payment's last event.
    position: Option<i64>,
    /// Why nothing changed.
    ignored: Option<String>,
}

/// `200` of the health probes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HealthStatus {
    /// `ok` (live) or `ready`.
    #[schema(example = "ok")]
    status: String,
    /// `ready` only: each check (`database`, `migrations`, `projections`) with `ok` and what
    /// it saw.
    #[schema(value_type = Option<Object>)]
    checks: Option<serde_json::Value>,
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
