//! Counted values validated once, at construction.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value object refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Quantities per command are bounded to catch typos such as an extra zero.
    #[error("quantity must be between {min} and {max}, got {got}")]
    QuantityOutOfRange {
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
        /// What was given.
        got: i64,
    },
    /// SKUs are 1–64 characters of `A–Z 0–9 - _ .`, starting with a letter or digit.
    #[error(
        "invalid sku {0:?}: use 1-64 characters A-Z, 0-9, '-', '_' or '.', starting with a letter or digit"
    )]
    InvalidSku(String),
}

/// How many units one command moves: 1..=1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// Largest quantity a single command may carry.
    pub const MAX: u32 = 1000;

    /// Validates `1..=1000`.
    ///
    /// # Errors
    /// [`ValueError::QuantityOutOfRange`].
    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u32::try_from(value) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(ValueError::QuantityOutOfRange {
                min: 1,
                max: Self::MAX,
                got: value,
            }),
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Quantity {
    type Error = ValueError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(i64::from(value))
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

/// A stock keeping unit: the id of a StockItem, stored upper-case so `mug-001` and `MUG-001`
/// can never become two items.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// Validates and upper-cases a SKU.
    ///
    /// # Errors
    /// [`ValueError::InvalidSku`].
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(Self(raw.to_ascii_uppercase()))
        } else {
            Err(ValueError::InvalidSku(raw.chars().take(80).collect()))
        }
    }

    /// The SKU text (also the StockItem's aggregate id).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sku {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_is_bounded() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert!(Quantity::new(1001).is_err());
        assert_eq!(Quantity::new(1000).unwrap().get(), 1000);
    }

    #[test]
    fn sku_is_validated_and_upper_cased() {
        assert_eq!(Sku::parse("mug-001").unwrap().as_str(), "MUG-001");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("-MUG").is_err());
        assert!(Sku::parse("MUG 001").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
    }
}
