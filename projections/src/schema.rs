//! OpenAPI descriptions of domain values the views embed. `domain` stays free of
//! documentation crates, so the views name these stand-ins with `#[schema(value_type = ..)]`;
//! each mirrors the JSON the domain type serializes to.

use utoipa::ToSchema;

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
