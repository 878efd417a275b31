//! Orders: place, cancel and read. The order saga (reserve, pay, complete, and undo after a
//! cancel) comes with the feed.

use actix_web::{HttpResponse, web};
use domain::order::{Order, OrderCommand, OrderItem, OrderStatus};
use domain::stock_item::StockItem;
use domain::{CustomerId, OrderId, Quantity, Sku};
use serde::Deserialize;

use projections::queries;

use crate::views::read::{OrderView, Page};

use super::params::{ReadParams, found, settle, wait_for};
use super::{CancelBody, accepted_command, path_uuid};
use crate::auth::Access;
use crate::extract::{OptionalJson, RequestContext, ValidJson};
use crate::problem::{ApiError, FieldError};
use crate::state::{AppState, Ttl};
use crate::validation::{Validator, accepted};

/// Most lines one order may have.
const MAX_ITEMS: usize = 100;

/// `POST /api/v1/orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The customer (with auth on, the token's subject).
    #[schema(format = Uuid)]
    customer_id: String,
    /// 1–100 lines, each SKU once.
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<ItemInput>,
}

/// One requested line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// A registered stock item.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", example = "MUG-001")]
    sku: String,
    /// 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    quantity: i64,
}

impl PlaceOrder {
    fn validate(&self) -> Result<(CustomerId, Vec<(Sku, Quantity)>), ApiError> {
        let mut v = Validator::default();
        let customer = v.uuid("customer_id", &self.customer_id);
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            v.error("items", format!("must have 1 to {MAX_ITEMS} items"));
        }
        let mut lines = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate().take(MAX_ITEMS) {
            let sku = v.sku(&format!("items[{i}].sku"), &item.sku);
            let quantity = v.quantity(&format!("items[{i}].quantity"), item.quantity);
            if let Some(sku) = &sku
                && lines
                    .iter()
                    .any(|(s, _): &(Option<Sku>, _)| s.as_ref() == Some(sku))
            {
                v.error(format!("items[{i}].sku"), format!("{sku} appears twice"));
            }
            lines.push((sku, quantity));
        }
        v.finish()?;
        let lines = lines
            .into_iter()
            .map(|(s, q)| Ok((accepted(s)?, accepted(q)?)))
            .collect::<Result<_, ApiError>>()?;
        Ok((CustomerId(accepted(customer)?), lines))
    }
}

/// `GET /api/v1/orders/{id}`.
async fn price_items(
    state: &AppState,
    lines: Vec<(Sku, Quantity)>,
) -> Result<Vec<OrderItem>, ApiError> {
    let loads = lines
        .iter()
        .map(|(sku, _)| state.bus.load::<StockItem>(sku.as_str()));
    let items = futures::future::try_join_all(loads).await?;
    let mut unknown = Vec::new();
    let mut priced = Vec::with_capacity(lines.len());
    for (i, ((sku, quantity), item)) in lines.into_iter().zip(items).enumerate() {
        match item.unit_price() {
            Some(unit_price) if item.is_registered() => priced.push(OrderItem {
                sku,
                quantity,
                unit_price,
            }),
            _ => unknown.push(FieldError::new(
                format!("items[{i}].sku"),
                format!("no stock item {sku}"),
            )),
        }
    }
    if unknown.is_empty() {
        Ok(priced)
    } else {
        Err(
            ApiError::unprocessable("unknown_sku", "an item names an unknown sku")
                .with_errors(unknown),
        )
    }
}

/// Records an order in `STARTED`.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    request_body = PlaceOrder,
    responses(
        (status = 202, description = "Placed; the saga reserves stock and creates the payment", body = super::CommandAccepted<'static>),
    )
)]
pub async fn place_order(
    state: web::Data<AppState>,
    ctx: RequestContext,
    ValidJson(body): ValidJson<PlaceOrder>,
) -> Result<HttpResponse, ApiError> {
    let (customer_id, lines) = body.validate()?;
    ctx.access.require_acting_for(customer_id.0)?;
    let items = price_items(&state, lines).await?;
    let id = OrderId::new_random();
    let command = OrderCommand::Place {
        customer_id,
        items,
        expires_at: Ttl::deadline(state.ttl.order),
    };
    let committed = state
        .bus
        .execute::<Order>(&id.to_string(), command, &ctx.metadata())
        .await?;
    Ok(accepted_command(
        &id.to_string(),
        &format!("/api/v1/orders/{id}"),
        committed,
    ))
}

/// Cancels an order that has not ended: before payment the saga then releases its stock and
/// cancels the intent; after (a `COMPLETED` order) it refunds. Idempotent: cancelling a
/// cancelled order records nothing and answers 202 with the same position. An unknown order is
/// 404, one that already ended otherwise (failed, expired, refunded) 409 `illegal_transition`.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    request_body(content = Option<super::CancelBody>, description = "Optional: the reason"),
    responses(
        (status = 202, description = "Cancelled (or already cancelled)", body = super::CommandAccepted<'static>),
        (status = 404, description = "No such order", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order already ended (`illegal_transition`)", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_order(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<HttpResponse, ApiError> {
    super::cancel::<Order>(&state, &ctx, &path, body).await
}

/// Filters of `GET /api/v1/orders`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// Only this customer's orders.
    #[param(value_type = Option<uuid::Uuid>)]
    customer: Option<String>,
    /// Only orders in this status (`STARTED`, `PAYMENT_PENDING`, `COMPLETED`, …).
    status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    read: ReadParams,
}

/// Reads one order from the orders read model (and its payment from the payments one).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "The order's id"), ReadParams),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path)?;
    settle(&state, &params, &["orders", "payments"]).await?;
    found(
        queries::order(
            &state.read_pool,
            state.read_caches.orders(),
            id,
            state.read_wait,
        )
        .await?
        .map(OrderView::from)
        .filter(|order| access.may_act_for(order.customer_id)),
        "order_not_found",
        || format!("no order {id}"),
    )
}

/// Lists orders by customer and status, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    params(OrderListParams, ReadParams),
    responses(
        (status = 200, description = "One page of orders", body = Page<OrderView>),
    )
)]
pub async fn list_orders(
    state: web::Data<AppState>,
    access: Access,
    params: web::Query<OrderListParams>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let customer = params
        .customer
        .as_deref()
        .and_then(|c| v.uuid("customer", c));
    let status = params.status.as_deref().map(str::to_ascii_uppercase);
    if let Some(status) = &status
        && OrderStatus::parse(status).is_none()
    {
        let names: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
        v.error("status", format!("must be one of {}", names.join(", ")));
    }
    let min_position = params.read.min_position(&mut v);
    let page = params.read.page(&mut v);
    v.finish()?;
    wait_for(&state, &["orders", "payments"], min_position).await?;
    let Some(customer) = access.list_filter(customer) else {
        return Ok(HttpResponse::Ok().json(Page::<OrderView>::empty(page)));
    };
    let page = queries::orders(
        &state.read_pool,
        customer,
        status.as_deref(),
        page,
        state.read_wait,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(page, OrderView::from)))
}
