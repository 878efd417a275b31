//! Inventory and time slots: register, restock, read.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::Sku;
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use serde::Deserialize;

use projections::queries::{self, StockFilter};

use super::params::{ReadParams, boolean, found, settle, wait_for};
use super::{accepted_command, path_sku};
use crate::extract::{RequestContext, ValidJson};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validation::{MoneyInput, Validator, accepted};

/// Largest initial count; restocks add at most 1000 per command.
const MAX_INITIAL_QUANTITY: u32 = 1_000_000;

/// `POST /api/v1/stock-items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStockItem {
    sku: String,
    name: String,
    kind: String,
    quantity: i64,
    #[serde(default)]
    low_stock_threshold: i64,
    unit_price: MoneyInput,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restock {
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
pub async fn register_stock_item(
    state: web::Data<AppState>,
    ctx: RequestContext,
    ValidJson(body): ValidJson<RegisterStockItem>,
) -> Result<HttpResponse, ApiError> {
    let (sku, command) = body.validate()?;
    execute(&state, &ctx, &sku, command).await
}

/// Adds units (or seats).
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
#[derive(Debug, Deserialize)]
pub struct StockListParams {
    kind: Option<String>,
    low_stock: Option<String>,
    depleted: Option<String>,
    starts_from: Option<String>,
    starts_before: Option<String>,
    #[serde(flatten)]
    read: ReadParams,
}

/// Reads one item's stock level from the stock read model.
pub async fn get_stock_item(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<ReadParams>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_sku(&path)?;
    settle(&state, &params, &["stock_items"]).await?;
    found(
        queries::stock_item(&state.pool, sku.as_str()).await?,
        "stock_item_not_found",
        || format!("no stock item {sku}"),
    )
}

/// Lists stock levels: `kind=time_slot` orders slots by start time, `low_stock=true` gives the
/// low-stock list, `depleted=true` the items with nothing left.
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
    let page = queries::stock_items(&state.pool, &filter, page).await?;
    Ok(HttpResponse::Ok().json(page))
}
