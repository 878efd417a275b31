//! Inventory and time slots: register, restock, read.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::Sku;
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use serde::Deserialize;

use projections::queries::{self, StockFilter};

use crate::views::read::{Page, StockItemView};

use super::params::{ReadParams, boolean, found, settle, wait_for};
use super::{accepted_command, path_sku};
use crate::extract::{RequestContext, ValidJson};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validation::{MoneyInput, Validator, accepted};

/// Largest initial count; restocks add at most 1000 per command.
const MAX_INITIAL_QUANTITY: u32 = 1_000_000;

/// `POST /api/v1/stock-items`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStockItem {
    /// 1–64 characters `A–Z 0–9 - _ .`, starting with a letter or digit (stored upper-case).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", example = "MUG-001")]
    sku: String,
    /// Display name (at most 200 characters).
    #[schema(example = "Clay mug")]
    name: String,
    /// `product`, or `time_slot` (which needs `starts_at`; `quantity` is then seats).
    #[schema(pattern = "^(product|time_slot)$", example = "product")]
    kind: String,
    /// Initial units or seats (0–1000000).
    #[schema(minimum = 0, maximum = 1_000_000)]
    quantity: i64,
    /// Availability at or below which the item is low on stock (0: never).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    low_stock_threshold: i64,
    /// Price of one unit (or seat).
    #[schema(value_type = crate::views::read::MoneySchema)]
    unit_price: MoneyInput,
    /// A time slot's start (RFC 3339).
    starts_at: Option<DateTime<Utc>>,
}

impl RegisterStockItem {
    fn validate(&self) -> Result<(Sku, StockItemCommand), ApiError> {
        let mut v = Validator::default();
        let sku = v.sku("sku", &self.sku);
        let name = v.text("name", &self.name, 200);
        let quantity = v.count("quantity", self.quantity, 0, MAX_INITIAL_QUANTITY);
        let threshold = v.count(
            "low_stock_threshold",
            self.low_stock_threshold,
            0,
            MAX_INITIAL_QUANTITY,
        );
        let unit_price = v.money("unit_price", &self.unit_price);
        let kind = match (self.kind.as_str(), self.starts_at) {
            ("product", None) => Some(StockKind::Product),
            ("product", Some(_)) => {
                v.error("starts_at", "only a time_slot has starts_at");
                None
            }
            ("time_slot", Some(starts_at)) => Some(StockKind::TimeSlot { starts_at }),
            ("time_slot", None) => {
                v.error("starts_at", "a time_slot needs starts_at");
                None
            }
            _ => {
                v.error("kind", "must be \"product\" or \"time_slot\"");
                None
            }
        };
        v.finish()?;
        let sku = accepted(sku)?;
        Ok((
            sku.clone(),
            StockItemCommand::Register {
                sku,
                name: accepted(name)?,
                kind: accepted(kind)?,
                quantity: accepted(quantity)?,
                low_stock_threshold: accepted(threshold)?,
                unit_price: accepted(unit_price)?,
            },
        ))
    }
}

/// `POST /api/v1/stock-items/{sku}/restock`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    /// Units (or seats) to add: 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    quantity: i64,
}

/// Runs a command on one item and answers 202 with its position.
async fn execute(
    state: &AppState,
    ctx: &RequestContext,
    sku: &Sku,
    command: StockItemCommand,
) -> Result<HttpResponse, ApiError> {
    let committed = state
        .bus
        .execute::<StockItem>(sku.as_str(), command, &ctx.metadata())
        .await?;
    Ok(accepted_command(
        sku.as_str(),
        &format!("/api/v1/stock-items/{sku}"),
        committed,
    ))
}

/// Registers a product or a time slot.
#[utoipa::path(
    post,
    path = "/api/v1/stock-items",
    tag = "stock",
    request_body = RegisterStockItem,
    responses(
        (status = 202, description = "Registered; `Location` names the item", body = super::CommandAccepted<'static>),
        (status = 409, description = "The SKU is already registered", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register_stock_item(
    state: web::Data<AppState>,
    ctx: RequestContext,
    ValidJson(body): ValidJson<RegisterStockItem>,
) -> Result<HttpResponse, ApiError> {
    let (sku, command) = body.validate()?;
    execute(&state, &ctx, &sku, command).await
}

/// Adds units (or seats).
#[utoipa::path(
    post,
    path = "/api/v1/stock-items/{sku}/restock",
    tag = "stock",
    params(("sku" = String, Path, description = "The stock item's SKU")),
    request_body = Restock,
    responses(
        (status = 202, description = "Restocked", body = super::CommandAccepted<'static>),
        (status = 404, description = "No such stock item", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The restock would overflow the item's count", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn restock(
    state: web::Data<AppState>,
    ctx: RequestContext,
    path: web::Path<String>,
    ValidJson(body): ValidJson<Restock>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_sku(&path)?;
    let mut v = Validator::default();
    let quantity = v.quantity("quantity", body.quantity);
    v.finish()?;
    let command = StockItemCommand::Restock {
        quantity: accepted(quantity)?,
    };
    execute(&state, &ctx, &sku, command).await
}

/// Filters of `GET /api/v1/stock-items`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockListParams {
    /// `product` or `time_slot` (slots are then ordered by start time).
    kind: Option<String>,
    /// `true`: only items at or below their threshold; `false`: only those above.
    #[param(value_type = Option<bool>)]
    low_stock: Option<String>,
    /// `true`: only items with nothing available; `false`: only those with some.
    #[param(value_type = Option<bool>)]
    depleted: Option<String>,
    /// Time slots starting at or after (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    starts_from: Option<String>,
    /// Time slots starting before (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    starts_before: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    read: ReadParams,
}

/// Reads one item's stock level from the stock read model.
#[utoipa::path(
    get,
    path = "/api/v1/stock-items/{sku}",
    tag = "stock",
    params(("sku" = String, Path, description = "The stock item's SKU"), ReadParams),
    responses(
        (status = 200, description = "The stock level", body = StockItemView),
        (status = 404, description = "No such stock item", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_stock_item(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_sku(&path)?;
    settle(&state, &params, &["stock_items"]).await?;
    found(
        queries::stock_item(
            &state.read_pool,
            state.read_caches.stock_items(),
            sku.as_str(),
        )
        .await?
        .map(StockItemView::from),
        "stock_item_not_found",
        || format!("no stock item {sku}"),
    )
}

/// Lists stock levels: `kind=time_slot` orders slots by start time, `low_stock=true` gives the
/// low-stock list, `depleted=true` the items with nothing left.
#[utoipa::path(
    get,
    path = "/api/v1/stock-items",
    tag = "stock",
    params(StockListParams, ReadParams),
    responses(
        (status = 200, description = "One page of stock levels", body = Page<StockItemView>),
    )
)]
pub async fn list_stock_items(
    state: web::Data<AppState>,
    params: web::Query<StockListParams>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let kind = params.kind.clone();
    if let Some(kind) = &kind
        && !matches!(kind.as_str(), "product" | "time_slot")
    {
        v.error("kind", "must be product or time_slot");
    }
    let low_stock = boolean(&mut v, "low_stock", params.low_stock.as_deref());
    let depleted = boolean(&mut v, "depleted", params.depleted.as_deref());
    let mut instant = |field: &str, raw: Option<&str>| {
        raw.and_then(|raw| match DateTime::parse_from_rfc3339(raw) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                v.error(field, "must be an RFC 3339 timestamp");
                None
            }
        })
    };
    let starts_from = instant("starts_from", params.starts_from.as_deref());
    let starts_before = instant("starts_before", params.starts_before.as_deref());
    let min_position = params.read.min_position(&mut v);
    let page = params.read.page(&mut v);
    v.finish()?;
    wait_for(&state, &["stock_items"], min_position).await?;
    let filter = StockFilter {
        kind,
        low_stock,
        depleted,
        starts_from,
        starts_before,
    };
    let page = queries::stock_items(&state.read_pool, &filter, page).await?;
    Ok(HttpResponse::Ok().json(Page::of(page, StockItemView::from)))
}
