//! What the API reads: views over the read models only, never the event store.

use chrono::{DateTime, Utc};
use domain::Money;
use domain::order::OrderItem;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::joined::{Gap, Join};

use crate::models::bookings::BookingRow;
use crate::models::orders::OrderRow;
use crate::models::payments::PaymentRow;
use crate::models::stock_items::StockLevel;
use crate::schema::{MoneySchema, OrderItemSchema};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored row does not decode (a schema and code out of step).
    #[error("a {0} row does not decode: {1}")]
    Corrupt(&'static str, serde_json::Error),
    /// Two joined models did not reach one point of the feed in time.
    #[error("projection {name} has not reached position {position} within {waited:?}")]
    Behind {
        /// The model that is behind.
        name: &'static str,
        /// Where it must get.
        position: i64,
        /// How long the read waited.
        waited: std::time::Duration,
    },
}

fn decode<T: DeserializeOwned>(what: &'static str, json: &str) -> Result<T, QueryError> {
    serde_json::from_str(json).map_err(|e| QueryError::Corrupt(what, e))
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
    /// Whether a next page exists.
    pub has_more: bool,
}

/// Which page to read.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u32,
    /// Rows per page (1..=100).
    pub per_page: u32,
}

impl PageRequest {
    fn limit(self) -> i64 {
        i64::from(self.per_page) + 1
    }

    fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.per_page)
    }

    fn finish<T>(self, mut items: Vec<T>) -> Page<T> {
        let has_more = items.len() > self.per_page as usize;
        items.truncate(self.per_page as usize);
        Page {
            items,
            page: self.page,
            per_page: self.per_page,
            has_more,
        }
    }
}

/// What an order or booking shows of its payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentSummary {
    /// The payment id.
    pub id: Uuid,
    /// Lower-case payment status.
    pub status: String,
    /// For the client to confirm the intent.
    pub client_secret: Option<String>,
}

impl From<PaymentRow> for PaymentSummary {
    fn from(row: PaymentRow) -> Self {
        Self {
            id: row.id,
            status: row.status,
            client_secret: row.client_secret,
        }
    }
}

/// `GET /api/v1/orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderView {
    /// Order id.
    pub id: Uuid,
    /// Who placed it.
    pub customer_id: Uuid,
    /// Upper-case status.
    pub status: String,
    /// Lines with frozen prices.
    #[schema(value_type = Vec<OrderItemSchema>)]
    pub items: Vec<OrderItem>,
    /// Sum of the lines.
    #[schema(value_type = MoneySchema)]
    pub total: Money,
    /// Its payment, once one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentSummary>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it expires unless paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of its last event.
    pub position: i64,
}

impl OrderView {
    fn new(row: OrderRow, payment: Option<PaymentRow>) -> Self {
        Self {
            id: row.id,
            customer_id: row.customer_id,
            status: row.status,
            items: row.items,
            total: row.total,
            payment: payment.map(PaymentSummary::from),
            failure_reason: row.failure_reason,
            placed_at: row.placed_at,
            expires_at: row.expires_at,
            updated_at: row.updated_at,
            position: row.position,
        }
    }
}

/// `GET /api/v1/bookings/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BookingView {
    /// Booking id.
    pub id: Uuid,
    /// Who booked.
    pub customer_id: Uuid,
    /// The time slot.
    pub slot_sku: String,
    /// Seats.
    pub guests: i32,
    /// Upper-case status.
    pub status: String,
    /// Price of one seat.
    #[schema(value_type = MoneySchema)]
    pub unit_price: Money,
    /// Guests × seat price.
    #[schema(value_type = MoneySchema)]
    pub total: Money,
    /// Its payment, once one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentSummary>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it expires unless paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of its last event.
    pub position: i64,
}

impl BookingView {
    fn new(row: BookingRow, payment: Option<PaymentRow>) -> Self {
        Self {
            id: row.id,
            customer_id: row.customer_id,
            slot_sku: row.slot_sku,
            guests: row.guests,
            status: row.status,
            unit_price: row.unit_price,
            total: row.total,
            payment: payment.map(PaymentSummary::from),
            failure_reason: row.failure_reason,
            placed_at: row.placed_at,
            expires_at: row.expires_at,
            updated_at: row.updated_at,
            position: row.position,
        }
    }
}

/// `GET /api/v1/stock-items/{sku}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockItemView {
    /// The SKU.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// `product` or `time_slot`.
    pub kind: String,
    /// Units or seats in stock.
    pub on_hand: i64,
    /// Held by open reservations.
    pub reserved: i64,
    /// `on_hand - reserved`.
    pub available: i64,
    /// `available <= low_stock_threshold`, with threshold 0 meaning never low.
    pub low_stock: bool,
    /// The low-stock threshold.
    pub low_stock_threshold: i64,
    /// `available == 0`.
    pub depleted: bool,
    /// Price of one unit.
    #[schema(value_type = MoneySchema)]
    pub unit_price: Money,
    /// A time slot's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of its last event.
    pub position: i64,
}

impl From<StockLevel> for StockItemView {
    fn from(row: StockLevel) -> Self {
        Self {
            sku: row.id,
            name: row.name,
            kind: row.kind,
            on_hand: row.on_hand,
            reserved: row.reserved,
            available: row.available,
            low_stock: row.low_stock,
            low_stock_threshold: row.low_stock_threshold,
            depleted: row.depleted,
            unit_price: row.unit_price,
            starts_at: row.starts_at,
            updated_at: row.updated_at,
            position: row.position,
        }
    }
}

/// `GET /api/v1/payments/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentView {
    /// Payment id.
    pub id: Uuid,
    /// What it pays for.
    pub owner: Owned,
    /// Lower-case status.
    pub status: String,
    /// Amount charged.
    #[schema(value_type = MoneySchema)]
    pub amount: Money,
    /// Refunded so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<MoneySchema>)]
    pub refunded: Option<Money>,
    /// `stripe` or `simulated`.
    pub provider: String,
    /// The provider's intent id.
    pub provider_intent_id: String,
    /// Why it failed or was canceled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
    /// Global position of its last event.
    pub position: i64,
}

/// The order or booking a payment belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Owned {
    /// `order` or `booking`.
    pub kind: String,
    /// Its id.
    pub id: Uuid,
}

impl From<PaymentRow> for PaymentView {
    fn from(row: PaymentRow) -> Self {
        Self {
            id: row.id,
            owner: Owned {
                kind: row.owner_kind,
                id: row.owner_id,
            },
            status: row.status,
            amount: row.amount,
            refunded: row.refunded,
            provider: row.provider,
            provider_intent_id: row.provider_intent_id,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
            position: row.position,
        }
    }
}

fn payment(json: Option<String>) -> Result<Option<PaymentRow>, QueryError> {
    json.map(|j| decode("payment", &j)).transpose()
}

/// An order or a booking: a row of its own table joined with its payment's.
trait WithPayment: Sized {
    /// What errors call it.
    const WHAT: &'static str;
    /// How its table joins the payments.
    const JOIN: Join;
    /// Its read-model row.
    type Row: DeserializeOwned;
    fn new(row: Self::Row, payment: Option<PaymentRow>) -> Self;

    /// The view of one joined row (`main`, `payment` JSON at columns 0 and 1), adding what it
    /// needs to be consistent to `gap`.
    fn from_joined(row: &PgRow, gap: &mut Gap) -> Result<Self, QueryError> {
        let main: String = row.try_get(0)?;
        let payment_json: Option<String> = row.try_get(1)?;
        gap.add(row, 2)?;
        Ok(Self::new(
            decode(Self::WHAT, &main)?,
            payment(payment_json)?,
        ))
    }
}

impl WithPayment for OrderView {
    const WHAT: &'static str = "order";
    const JOIN: Join = Join {
        main: "orders",
        main_alias: "o",
    };
    type Row = OrderRow;
    fn new(row: OrderRow, payment: Option<PaymentRow>) -> Self {
        OrderView::new(row, payment)
    }
}

impl WithPayment for BookingView {
    const WHAT: &'static str = "booking";
    const JOIN: Join = Join {
        main: "bookings",
        main_alias: "b",
    };
    type Row = BookingRow;
    fn new(row: BookingRow, payment: Option<PaymentRow>) -> Self {
        BookingView::new(row, payment)
    }
}

/// `SELECT <main>, <payment>, <consistency> FROM <main table> … LEFT JOIN rm_payments p …`
/// with `rest` (joins, filters, order) after it.
fn joined_sql<V: WithPayment>(table: &str, rest: &str) -> String {
    let m = V::JOIN.main_alias;
    format!(
        "SELECT to_jsonb({m})::text, to_jsonb(p)::text, {} FROM {table} {m} \
         LEFT JOIN rm_payments p ON p.id = {m}.payment_id {rest}",
        V::JOIN.columns()
    )
}

/// One row by id (`$1`), joined with its payment at one point of the feed.
async fn one<V: WithPayment>(
    pool: &PgPool,
    sql: &str,
    id: Uuid,
    wait: Duration,
) -> Result<Option<V>, QueryError> {
    V::JOIN
        .consistent(pool, wait, || async {
            let mut gap = Gap::default();
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?;
            let view = row.map(|row| V::from_joined(&row, &mut gap)).transpose()?;
            Ok((view, gap))
        })
        .await
}

/// A page of rows filtered by customer (`$1`) and one text column (`$2`), each joined with
/// its payment at one point of the feed.
async fn page_of<V: WithPayment>(
    pool: &PgPool,
    sql: &str,
    filters: (Option<Uuid>, Option<&str>),
    page: PageRequest,
    wait: Duration,
) -> Result<Page<V>, QueryError> {
    let (customer, filter) = filters;
    let items = V::JOIN
        .consistent(pool, wait, || async {
            let mut gap = Gap::default();
            let rows = sqlx::query(sql)
                .bind(customer)
                .bind(filter)
                .bind(page.limit())
                .bind(page.offset())
                .fetch_all(pool)
                .await?;
            let items = rows
                .iter()
                .map(|row| V::from_joined(row, &mut gap))
                .collect::<Result<Vec<V>, QueryError>>()?;
            Ok((items, gap))
        })
        .await?;
    Ok(page.finish(items))
}

/// One order with its payment as they were at one point of the feed, waiting at most `wait`
/// for the model that is behind.
///
/// # Errors
/// [`QueryError`].
pub async fn order(
    pool: &PgPool,
    id: Uuid,
    wait: Duration,
) -> Result<Option<OrderView>, QueryError> {
    let sql = joined_sql::<OrderView>("rm_orders", "WHERE o.id = $1");
    one(pool, &sql, id, wait).await
}

/// Orders filtered by customer and status, newest first, each with its payment as they were
/// at one point of the feed.
///
/// # Errors
/// [`QueryError`].
pub async fn orders(
    pool: &PgPool,
    customer: Option<Uuid>,
    status: Option<&str>,
    page: PageRequest,
    wait: Duration,
) -> Result<Page<OrderView>, QueryError> {
    let sql = joined_sql::<OrderView>(
        "rm_orders",
        "WHERE ($1::uuid IS NULL OR o.customer_id = $1) AND ($2::text IS NULL OR o.status = $2) \
         ORDER BY o.placed_at DESC, o.id LIMIT $3 OFFSET $4",
    );
    page_of(pool, &sql, (customer, status), page, wait).await
}

/// The customer of the order or booking (`kind`) `id`, if the read model has it.
///
/// # Errors
/// [`QueryError`].
pub async fn customer_of(pool: &PgPool, kind: &str, id: Uuid) -> Result<Option<Uuid>, QueryError> {
    let sql = match kind {
        "order" => "SELECT customer_id FROM rm_orders WHERE id = $1",
        "booking" => "SELECT customer_id FROM rm_bookings WHERE id = $1",
        _ => return Ok(None),
    };
    Ok(sqlx::query_scalar(sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// One booking with its payment as they were at one point of the feed, waiting at most
/// `wait` for the model that is behind.
///
/// # Errors
/// [`QueryError`].
pub async fn booking(
    pool: &PgPool,
    id: Uuid,
    wait: Duration,
) -> Result<Option<BookingView>, QueryError> {
    let sql = joined_sql::<BookingView>("rm_bookings", "WHERE b.id = $1");
    one(pool, &sql, id, wait).await
}

/// Bookings filtered by customer and slot, newest first.
///
/// # Errors
/// [`QueryError`].
pub async fn bookings(
    pool: &PgPool,
    customer: Option<Uuid>,
    slot: Option<&str>,
    page: PageRequest,
    wait: Duration,
) -> Result<Page<BookingView>, QueryError> {
    let sql = joined_sql::<BookingView>(
        "rm_bookings",
        "WHERE ($1::uuid IS NULL OR b.customer_id = $1) AND ($2::text IS NULL OR b.slot_sku = $2) \
         ORDER BY b.placed_at DESC, b.id LIMIT $3 OFFSET $4",
    );
    page_of(pool, &sql, (customer, slot), page, wait).await
}

/// One stock item.
///
/// # Errors
/// [`QueryError`].
pub async fn stock_item(pool: &PgPool, sku: &str) -> Result<Option<StockItemView>, QueryError> {
    let row: Option<String> =
        sqlx::query_scalar("SELECT to_jsonb(s)::text FROM rm_stock_items s WHERE s.id = $1")
            .bind(sku)
            .fetch_optional(pool)
            .await?;
    row.map(|s| decode::<StockLevel>("stock item", &s).map(StockItemView::from))
        .transpose()
}

/// Filters of the stock list.
#[derive(Debug, Clone, Default)]
pub struct StockFilter {
    /// `product` or `time_slot`.
    pub kind: Option<String>,
    /// Only items at or below their threshold (or only those above, with `false`).
    pub low_stock: Option<bool>,
    /// Only items with nothing available (or only those with some, with `false`).
    pub depleted: Option<bool>,
    /// Time slots starting at or after.
    pub starts_from: Option<DateTime<Utc>>,
    /// Time slots starting before.
    pub starts_before: Option<DateTime<Utc>>,
}

/// Stock items: time slots by start time when `kind` is `time_slot`, otherwise by SKU.
///
/// # Errors
/// [`QueryError`].
pub async fn stock_items(
    pool: &PgPool,
    filter: &StockFilter,
    page: PageRequest,
) -> Result<Page<StockItemView>, QueryError> {
    let order = if filter.kind.as_deref() == Some("time_slot") {
        "s.starts_at, s.id"
    } else {
        "s.id"
    };
    let sql = format!(
        "SELECT to_jsonb(s)::text FROM rm_stock_items s \
         WHERE ($1::text IS NULL OR s.kind = $1) AND ($2::boolean IS NULL OR s.low_stock = $2) \
           AND ($3::timestamptz IS NULL OR s.starts_at >= $3) \
           AND ($4::timestamptz IS NULL OR s.starts_at < $4) \
           AND ($7::boolean IS NULL OR s.depleted = $7) \
         ORDER BY {order} LIMIT $5 OFFSET $6"
    );
    let rows: Vec<String> = sqlx::query_scalar(&sql)
        .bind(filter.kind.as_deref())
        .bind(filter.low_stock)
        .bind(filter.starts_from)
        .bind(filter.starts_before)
        .bind(page.limit())
        .bind(page.offset())
        .bind(filter.depleted)
        .fetch_all(pool)
        .await?;
    let items = rows
        .iter()
        .map(|s| decode::<StockLevel>("stock item", s).map(StockItemView::from))
        .collect::<Result<_, QueryError>>()?;
    Ok(page.finish(items))
}

/// One payment.
///
/// # Errors
/// [`QueryError`].
pub async fn payment_by_id(pool: &PgPool, id: Uuid) -> Result<Option<PaymentView>, QueryError> {
    let row: Option<String> =
        sqlx::query_scalar("SELECT to_jsonb(p)::text FROM rm_payments p WHERE p.id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(|p| decode::<PaymentRow>("payment", &p).map(PaymentView::from))
        .transpose()
}
