//! `Reserva-Signature`: how a receiver knows a delivery came from us and is fresh.
//!
//! The scheme is Stripe's, so receivers can reuse what they know: the header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint's
//! secret>`. Each attempt is signed anew, so a retry hours later still passes a receiver's
//! freshness check, and a captured request replayed later fails it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "Reserva-Signature";

/// The `Reserva-Signature` value of `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// A new endpoint secret: `whsec_` and 32 random bytes in hex, as long as the hash.
pub fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `t=` or no `v1=` part, or a timestamp that is not a number.
    #[error("the Reserva-Signature header is malformed")]
    Malformed,
    /// Signed too long ago (or too far ahead): possibly a replay.
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    /// No `v1=` matches the body.
    #[error("no signature matches the body")]
    Mismatch,
}

/// Checks `header` against `body` as a receiver does: a `v1` made with `secret` over
/// `"<t>.<body>"` (compared in constant time), with `t` within `tolerance_secs` of `now`.
///
/// # Errors
/// [`SignatureError`].
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => candidates.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let matches = candidates.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|expected| {
            keyed(secret)
                .map(|mac| mac.chain_update(signed_payload(timestamp, body)))
                .is_some_and(|mac| mac.verify_slice(&expected).is_ok())
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    keyed(secret)
        .map(|mac| {
            mac.chain_update(signed_payload(timestamp, body))
                .finalize()
                .into_bytes()
                .to_vec()
        })
        .unwrap_or_default()
}

/// HMAC accepts keys of any length; `None` never happens.
fn keyed(secret: &str) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only_and_only_while_fresh() {
        let body = br#"{"subject":"order.created.v1"}"#;
        let header = sign("whsec_a", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify("whsec_a", &header, body, 1_700_000_100, 300), Ok(()));
        assert_eq!(
            verify("whsec_b", &header, body, 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_a", &header, b"{}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_a", &header, body, 1_700_001_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("whsec_a", "v1=00", body, 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_mac_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed apart from this code: printf '1.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
