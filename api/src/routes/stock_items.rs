//! Inventory and time slots: register, restock, read.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::stock_item::{StockItem, StockItemCommand, StockKind};
use domain::{Money, Sku};
use serde::{Deserialize, Serialize};

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

/// `GET /api/v1/stock-items/{sku}`.
#[derive(Debug, Serialize)]
pub struct StockItemView {
    sku: String,
    name: String,
    kind: &'static str,
    on_hand: u32,
    reserved: u32,
    available: u32,
    low_stock: bool,
    low_stock_threshold: u32,
    unit_price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at: Option<DateTime<Utc>>,
}

impl StockItemView {
    fn from_aggregate(sku: &Sku, item: &StockItem) -> Self {
        let (kind, starts_at) = match item.kind() {
            Some(StockKind::TimeSlot { starts_at }) => ("time_slot", Some(starts_at)),
            _ => ("product", None),
        };
        let available = item.available();
        Self {
            sku: sku.to_string(),
            name: item.name().to_owned(),
            kind,
            on_hand: item.on_hand(),
            reserved: item.reserved(),
            available,
            low_stock: available <= item.low_stock_threshold(),
            low_stock_threshold: item.low_stock_threshold(),
            unit_price: item.unit_price(),
            starts_at,
        }
    }
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

/// Reads one item (from its aggregate until the stock read model exists).
pub async fn get_stock_item(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_sku(&path)?;
    let item = state.bus.load::<StockItem>(sku.as_str()).await?;
    if !item.is_registered() {
        return Err(ApiError::not_found(
            "stock_item_not_found",
            format!("no stock item {sku}"),
        ));
    }
    Ok(HttpResponse::Ok().json(StockItemView::from_aggregate(&sku, &item)))
}
