//! The API's wire types: what each answer looks like and its OpenAPI schema, built from the
//! rows and reports of the crates below (which know nothing of HTTP).
//!
//! # Layout
//! - [`read`]: `/api/v1` views of orders, bookings, stock items and payments, and pages.
//! - [`operations`]: `/admin` answers.
//! - [`audit`]: histories, as-of states and causation traces.
//! - [`outbound`]: webhook endpoints and their deliveries.

pub mod audit;
pub mod operations;
pub mod outbound;
pub mod read;
