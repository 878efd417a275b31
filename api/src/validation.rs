//! Field-by-field checks at the edge, collecting every error before refusing.

use domain::{Currency, Money, Quantity, Sku};
use serde::Deserialize;

use crate::problem::{ApiError, FieldError};

/// Money as clients send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// Largest price accepted (10^12 minor units): beyond it a typo is likelier than a price.
const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Collects field errors; each check returns the parsed value when it passes.
#[derive(Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// Records an error for `field`.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A SKU.
    pub fn sku(&mut self, field: &str, raw: &str) -> Option<Sku> {
        Sku::parse(raw)
            .map_err(|e| self.error(field, e.to_string()))
            .ok()
    }

    /// A per-command quantity (1..=1000).
    pub fn quantity(&mut self, field: &str, raw: i64) -> Option<Quantity> {
        Quantity::new(raw)
            .map_err(|e| self.error(field, e.to_string()))
            .ok()
    }

    /// A count in `min..=max`.
    pub fn count(&mut self, field: &str, raw: i64, min: u32, max: u32) -> Option<u32> {
        match u32::try_from(raw) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(field, format!("must be between {min} and {max}, got {raw}"));
                None
            }
        }
    }

    /// A non-blank text of at most `max` characters, trimmed.
    pub fn text(&mut self, field: &str, raw: &str, max: usize) -> Option<String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            self.error(field, "must not be blank");
            None
        } else if trimmed.chars().count() > max || trimmed.chars().any(char::is_control) {
            self.error(field, format!("must be at most {max} printable characters"));
            None
        } else {
            Some(trimmed.to_owned())
        }
    }

    /// A UUID.
    pub fn uuid(&mut self, field: &str, raw: &str) -> Option<uuid::Uuid> {
        uuid::Uuid::parse_str(raw)
            .map_err(|_| self.error(field, "must be a UUID"))
            .ok()
    }

    /// A price.
    pub fn money(&mut self, field: &str, raw: &MoneyInput) -> Option<Money> {
        let currency = Currency::parse(&raw.currency)
            .map_err(|e| self.error(format!("{field}.currency"), e.to_string()))
            .ok();
        if !(0..=MAX_AMOUNT).contains(&raw.amount) {
            self.error(
                format!("{field}.amount"),
                format!("must be between 0 and {MAX_AMOUNT} minor units"),
            );
            return None;
        }
        Money::new(raw.amount, currency?).ok()
    }

    /// Ends validation: `Ok` only if no check failed.
    ///
    /// # Errors
    /// [`ApiError::validation`] with every field error.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// Unwraps values the validator accepted. Only called after [`Validator::finish`] passed, when
/// every check returned `Some`.
pub fn accepted<T>(value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::validation(Vec::new()))
}
