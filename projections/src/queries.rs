//! What the API reads: rows of the read models only, never the event store. How they look
//! on the wire is the API's business.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::time::Duration;
use uuid::Uuid;

use crate::joined::{Gap, Join};

use crate::models::bookings::BookingRow;
use crate::models::orders::OrderRow;
use crate::models::payments::PaymentRow;
use crate::models::stock_items::StockLevel;
use crate::row_cache::{JoinedRows, RowCache};

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

/// One page of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
    /// Whether a next page exists.
    pub has_more: bool,
}

/// An order's or booking's row with its payment's, read at one point of the feed.
pub type Joined<R> = (R, Option<PaymentRow>);

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

    fn finish<T>(self, mut items: Vec<T>) -> Paged<T> {
        let has_more = items.len() > self.per_page as usize;
        items.truncate(self.per_page as usize);
        Paged {
            items,
            page: self.page,
            per_page: self.per_page,
            has_more,
        }
    }
}

fn payment(json: Option<String>) -> Result<Option<PaymentRow>, QueryError> {
    json.map(|j| decode("payment", &j)).transpose()
}

/// An order's or booking's row: a row of its own table joined with its payment's.
trait WithPayment: DeserializeOwned {
    /// What errors call it.
    const WHAT: &'static str;
    /// How its table joins the payments.
    const JOIN: Join;

    /// The payment the row names (what the joined view links to).
    fn payment_id(&self) -> Option<Uuid>;

    /// One joined row (`main`, `payment` JSON at columns 0 and 1), adding what it needs to be
    /// consistent to `gap`.
    fn from_joined(row: &PgRow, gap: &mut Gap) -> Result<Joined<Self>, QueryError> {
        let main: String = row.try_get(0)?;
        let payment_json: Option<String> = row.try_get(1)?;
        gap.add(row, 2)?;
        Ok((decode(Self::WHAT, &main)?, payment(payment_json)?))
    }
}

impl WithPayment for OrderRow {
    const WHAT: &'static str = "order";
    const JOIN: Join = Join {
        main: "orders",
        main_alias: "o",
    };

    fn payment_id(&self) -> Option<Uuid> {
        self.payment_id
    }
}

impl WithPayment for BookingRow {
    const WHAT: &'static str = "booking";
    const JOIN: Join = Join {
        main: "bookings",
        main_alias: "b",
    };

    fn payment_id(&self) -> Option<Uuid> {
        self.payment_id
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

/// One row by id (`$1`), joined with its payment at one point of the feed: from `cache`
/// when it keeps the pair, else read (and kept, linked to its payment, if nothing was written
/// meanwhile).
async fn one<V: WithPayment>(
    pool: &PgPool,
    cache: Option<&RowCache<JoinedRows>>,
    sql: &str,
    id: Uuid,
    wait: Duration,
) -> Result<Option<Joined<V>>, QueryError> {
    let key = id.to_string();
    let projection = V::JOIN.main;
    if let Some((main, payment_json)) = cache.and_then(|c| c.get(&key)) {
        metrics::counter!(CACHE_READS, "projection" => projection, "outcome" => "hit").increment(1);
        return Ok(Some((decode(V::WHAT, &main)?, payment(payment_json)?)));
    }
    let (raw, ticket) = V::JOIN
        .consistent(pool, wait, || async {
            // Taken before each read: a write between it and the fill voids the fill.
            let ticket = cache.and_then(RowCache::ticket);
            let mut gap = Gap::default();
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?;
            let raw = row
                .map(|row| -> Result<JoinedRows, QueryError> {
                    gap.add(&row, 2)?;
                    Ok((row.try_get(0)?, row.try_get(1)?))
                })
                .transpose()?;
            Ok(((raw, ticket), gap))
        })
        .await?;
    let Some((main, payment_json)) = raw else {
        return Ok(None);
    };
    let view: Joined<V> = (decode(V::WHAT, &main)?, payment(payment_json.clone())?);
    if let (Some(cache), Some(ticket)) = (cache, ticket) {
        metrics::counter!(CACHE_READS, "projection" => projection, "outcome" => "miss")
            .increment(1);
        let link = view.0.payment_id().map(|p| p.to_string());
        cache.fill(ticket, &key, (main, payment_json), link.as_deref());
    }
    Ok(Some(view))
}

/// A page of rows filtered by customer (`$1`) and one text column (`$2`), each joined with
/// its payment at one point of the feed.
async fn page_of<V: WithPayment>(
    pool: &PgPool,
    sql: &str,
    filters: (Option<Uuid>, Option<&str>),
    page: PageRequest,
    wait: Duration,
) -> Result<Paged<Joined<V>>, QueryError> {
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
                .collect::<Result<Vec<_>, QueryError>>()?;
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
    cache: Option<&RowCache<JoinedRows>>,
    id: Uuid,
    wait: Duration,
) -> Result<Option<Joined<OrderRow>>, QueryError> {
    let sql = joined_sql::<OrderRow>("rm_orders", "WHERE o.id = $1");
    one(pool, cache, &sql, id, wait).await
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
) -> Result<Paged<Joined<OrderRow>>, QueryError> {
    let sql = joined_sql::<OrderRow>(
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
    cache: Option<&RowCache<JoinedRows>>,
    id: Uuid,
    wait: Duration,
) -> Result<Option<Joined<BookingRow>>, QueryError> {
    let sql = joined_sql::<BookingRow>("rm_bookings", "WHERE b.id = $1");
    one(pool, cache, &sql, id, wait).await
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
) -> Result<Paged<Joined<BookingRow>>, QueryError> {
    let sql = joined_sql::<BookingRow>(
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
pub async fn stock_item(
    pool: &PgPool,
    cache: Option<&RowCache>,
    sku: &str,
) -> Result<Option<StockLevel>, QueryError> {
    if let Some(row) = cache.and_then(|c| c.get(sku)) {
        metrics::counter!(CACHE_READS, "projection" => "stock_items", "outcome" => "hit")
            .increment(1);
        return decode::<StockLevel>("stock item", &row).map(Some);
    }
    let ticket = cache.and_then(RowCache::ticket);
    let row: Option<String> =
        sqlx::query_scalar("SELECT to_jsonb(s)::text FROM rm_stock_items s WHERE s.id = $1")
            .bind(sku)
            .fetch_optional(pool)
            .await?;
    if let (Some(cache), Some(ticket)) = (cache, ticket) {
        metrics::counter!(CACHE_READS, "projection" => "stock_items", "outcome" => "miss")
            .increment(1);
        if let Some(row) = &row {
            cache.fill(ticket, sku, row.clone(), None);
        }
    }
    row.map(|s| decode::<StockLevel>("stock item", &s))
        .transpose()
}

/// Reads of a cached projection's row, by `projection` and `outcome` (`hit` or `miss`); a
/// process that does not run the projection counts none.
pub const CACHE_READS: &str = "reserva_read_cache_reads_total";

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
) -> Result<Paged<StockLevel>, QueryError> {
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
        .map(|s| decode::<StockLevel>("stock item", s))
        .collect::<Result<_, QueryError>>()?;
    Ok(page.finish(items))
}

/// One payment.
///
/// # Errors
/// [`QueryError`].
pub async fn payment_by_id(pool: &PgPool, id: Uuid) -> Result<Option<PaymentRow>, QueryError> {
    let row: Option<String> =
        sqlx::query_scalar("SELECT to_jsonb(p)::text FROM rm_payments p WHERE p.id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(|p| decode::<PaymentRow>("payment", &p)).transpose()
}

/// Payments newest first: a customer's (those of its orders and bookings) or everyone's,
/// optionally in one status.
///
/// A customer's list starts from its orders and bookings (each table's customer index), so it
/// costs that customer's rows, not the whole table. A payment is listed once its owner's row
/// is in the orders or bookings model — always true once a reader waited for them, since an
/// owner is placed before its payment is created.
///
/// # Errors
/// [`QueryError`].
pub async fn payments(
    pool: &PgPool,
    customer: Option<Uuid>,
    status: Option<&str>,
    page: PageRequest,
) -> Result<Paged<PaymentRow>, QueryError> {
    let sql = match customer {
        Some(_) => {
            "SELECT to_jsonb(p)::text FROM rm_payments p \
             WHERE p.owner_id IN (SELECT id FROM rm_orders WHERE customer_id = $1 \
                                  UNION ALL SELECT id FROM rm_bookings WHERE customer_id = $1) \
               AND ($2::text IS NULL OR p.status = $2) \
             ORDER BY p.created_at DESC, p.id LIMIT $3 OFFSET $4"
        }
        None => {
            "SELECT to_jsonb(p)::text FROM rm_payments p \
             WHERE $1::uuid IS NULL AND ($2::text IS NULL OR p.status = $2) \
             ORDER BY p.created_at DESC, p.id LIMIT $3 OFFSET $4"
        }
    };
    let rows: Vec<String> = sqlx::query_scalar(sql)
        .bind(customer)
        .bind(status)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(pool)
        .await?;
    let items = rows
        .iter()
        .map(|p| decode::<PaymentRow>("payment", p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(items))
}
