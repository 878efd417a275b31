//! What a browser on another origin needs at the HTTP edge: CORS from an allow-list, security
//! headers, and compressed answers.
//!
//! Settings (`RESERVA_HTTP__*`), read once at start:
//! - `CORS_ORIGINS`: comma-separated origins (`https://shop.example`, `http://localhost:3000`)
//!   allowed to call the API from a browser; empty (the default) allows none. `*` allows any,
//!   and only without credentials.
//! - `CORS_CREDENTIALS` (default `false`): whether browsers may send cookies or HTTP auth with
//!   cross-origin calls. Bearer tokens in `Authorization` need no credentials mode.
//! - `COMPRESS_MIN_BYTES` (default `1024`): bodies at least this long are compressed (gzip or
//!   brotli, as the client's `Accept-Encoding` prefers); shorter ones cost more to compress
//!   than they save.
//!
//! # Layout
//! - [`cors`]: the allow-list and the refusal of preflights it does not cover;
//! - [`headers`]: security headers on every answer and the compression threshold.

pub mod cors;
pub mod headers;

use crate::configuration::{ConfigError, var};

/// The edge's settings.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Origins allowed by CORS, normalized (`scheme://host[:port]`, lower case); `None` in the
    /// list's place means any origin (`*`).
    pub cors_origins: CorsOrigins,
    /// `Access-Control-Allow-Credentials: true` on allowed origins.
    pub cors_credentials: bool,
    /// Bodies shorter than this are sent as they are.
    pub compress_min_bytes: u64,
}

/// Which origins CORS lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`).
    Any,
    /// Exactly these (possibly none).
    Listed(Vec<String>),
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            cors_origins: CorsOrigins::Listed(Vec::new()),
            cors_credentials: false,
            compress_min_bytes: 1024,
        }
    }
}

impl EdgeSettings {
    /// Reads `RESERVA_HTTP__CORS_ORIGINS`, `…__CORS_CREDENTIALS`, `…__COMPRESS_MIN_BYTES`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let origins = std::env::var("RESERVA_HTTP__CORS_ORIGINS").unwrap_or_default();
        let credentials = var("RESERVA_HTTP__CORS_CREDENTIALS", false)?;
        let compress_min_bytes = var("RESERVA_HTTP__COMPRESS_MIN_BYTES", 1024)?;
        Self::new(&origins, credentials, compress_min_bytes)
    }

    /// Settings from the raw allow-list.
    ///
    /// # Errors
    /// [`ConfigError`] for an origin that is not `scheme://host[:port]`, or `*` with
    /// credentials (browsers refuse that combination, and it would hand every site the
    /// caller's cookies).
    pub fn new(
        origins: &str,
        cors_credentials: bool,
        compress_min_bytes: u64,
    ) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            variable: "RESERVA_HTTP__CORS_ORIGINS",
            message,
        };
        let entries: Vec<&str> = origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        let cors_origins = if entries == ["*"] {
            if cors_credentials {
                return Err(error(
                    "`*` cannot be used with RESERVA_HTTP__CORS_CREDENTIALS=true".to_owned(),
                ));
            }
            CorsOrigins::Any
        } else {
            CorsOrigins::Listed(
                entries
                    .into_iter()
                    .map(|o| cors::normalize_origin(o).map_err(error))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(Self {
            cors_origins,
            cors_credentials,
            compress_min_bytes,
        })
    }
}
