//! What `/api/v1` answers: the views of the read models' rows, with their OpenAPI schemas.
//!
//! The read side returns rows; how they look on the wire (field names, what is left out, the
//! documentation) is the API's business, so it lives here.

use chrono::{DateTime, Utc};
use domain::Money;
use domain::order::OrderItem;
use projections::models::bookings::BookingRow;
use projections::models::orders::OrderRow;
use projections::models::payments::PaymentRow;
use projections::models::stock_items::StockLevel;
use projections::queries::{Joined, PageRequest, Paged};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

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

impl<T> Page<T> {
    /// An empty page at `page` (a customer asking for someone else's list).
    pub fn empty(page: PageRequest) -> Self {
        Self {
            items: Vec::new(),
            page: page.page,
            per_page: page.per_page,
            has_more: false,
        }
    }

    /// The wire page of rows read by `paged`, each turned into its view.
    pub fn of<R>(paged: Paged<R>, view: impl Fn(R) -> T) -> Self {
        Self {
            items: paged.items.into_iter().map(view).collect(),
            page: paged.page,
            per_page: paged.per_page,
            has_more: paged.has_more,
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
    /// The view of an order row and its payment row.
    pub fn new(row: OrderRow, payment: Option<PaymentRow>) -> Self {
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
    /// The view of a booking row and its payment row.
    pub fn new(row: BookingRow, payment: Option<PaymentRow>) -> Self {
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

impl From<Joined<OrderRow>> for OrderView {
    fn from((row, payment): Joined<OrderRow>) -> Self {
        Self::new(row, payment)
    }
}

impl From<Joined<BookingRow>> for BookingView {
    fn from((row, payment): Joined<BookingRow>) -> Self {
        Self::new(row, payment)
    }
}

/// OpenAPI descriptions of domain values the views embed. `domain` stays free of
/// documentation crates, so the views name these stand-ins with `#[schema(value_type = ..)]`;
/// each mirrors the JSON the domain type serializes to.
/// An amount of money: integer minor units and an ISO 4217 code, never a float.
#[derive(ToSchema)]
#[schema(as = Money)]
#[allow(dead_code)]
pub struct MoneySchema {
    /// Minor units (cents, centavos).
    #[schema(minimum = 0, example = 1500)]
    amount: i64,
    /// ISO 4217 code, upper case.
    #[schema(pattern = "^[A-Z]{3}$", example = "MXN")]
    currency: String,
}

/// One line of an order with the unit price frozen when it was placed.
#[derive(ToSchema)]
#[schema(as = OrderItem)]
#[allow(dead_code)]
pub struct OrderItemSchema {
    /// The stock item.
    #[schema(example = "MUG-001")]
    sku: String,
    /// How many (1–1000).
    #[schema(minimum = 1, maximum = 1000)]
    quantity: u32,
    /// Price of one unit.
    unit_price: MoneySchema,
}
