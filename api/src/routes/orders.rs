//! Orders: place and read. The order saga (reserve, pay, complete) comes with the feed.

use actix_web::{HttpResponse, web};
use domain::order::{Order, OrderCommand, OrderItem};
use domain::stock_item::StockItem;
use domain::{CustomerId, Money, OrderId, Quantity, Sku};
use serde::{Deserialize, Serialize};

use super::{accepted_command, path_uuid};
use crate::extract::{RequestContext, ValidJson};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::validation::{Validator, accepted};

/// Most lines one order may have.
const MAX_ITEMS: usize = 100;

/// `POST /api/v1/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    customer_id: String,
    items: Vec<ItemInput>,
}

/// One requested line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    sku: String,
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
#[derive(Debug, Serialize)]
pub struct OrderView {
    id: OrderId,
    customer_id: Option<CustomerId>,
    status: &'static str,
    items: Vec<OrderItem>,
    total: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
}

/// Prices each line from its StockItem; unknown SKUs are field errors.
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
pub async fn place_order(
    state: web::Data<AppState>,
    ctx: RequestContext,
    ValidJson(body): ValidJson<PlaceOrder>,
) -> Result<HttpResponse, ApiError> {
    let (customer_id, lines) = body.validate()?;
    let items = price_items(&state, lines).await?;
    let id = OrderId::new_random();
    let command = OrderCommand::Place { customer_id, items };
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

/// Reads one order (from its aggregate until the orders read model exists).
pub async fn get_order(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = OrderId(path_uuid(&path)?);
    let order = state.bus.load::<Order>(&id.to_string()).await?;
    let Some(status) = order.status() else {
        return Err(ApiError::not_found(
            "order_not_found",
            format!("no order {id}"),
        ));
    };
    Ok(HttpResponse::Ok().json(OrderView {
        id,
        customer_id: order.customer_id(),
        status: status.as_str(),
        items: order.items().to_vec(),
        total: order.total(),
        failure_reason: order.failure_reason().map(str::to_owned),
    }))
}
