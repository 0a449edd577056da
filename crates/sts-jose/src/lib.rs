//! The JOSE core shared by sts-broker (inbound verification, minting, its own JWKS) and
//! sts-verifier: one implementation of each step a signed token goes through.
//!
//! - [`jws`]: compact JWS decoding, refusing JWE, oversized tokens and duplicate JSON members;
//! - [`header`]: the header rules (algorithm pinning, `crit`, nesting, `kid`), read into
//!   jsonwebtoken's [`Header`];
//! - [`jwk`] and [`jwks`]: keys read through jsonwebtoken's [`Jwk`] into aws-lc-rs keys
//!   parsed once, and the key set of a JWKS (a `kid` published twice names no key);
//! - [`sign`]: signing keys, held parsed, published as [`Jwk`]s;
//! - [`fetch`] and [`discovery`]: the capped fetch (size cap, one deadline, no redirects,
//!   `Cache-Control: max-age`, ETag revalidation);
//! - [`cache`]: the JWKS cache (single flight, cooldown, stale-while-revalidate).
//!
//! Nothing here knows a web framework or a database.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alg;
pub mod b64;
pub mod cache;
mod der;
pub mod discovery;
pub mod fetch;
pub mod header;
pub mod json;
pub mod jwk;
pub mod jwks;
pub mod jws;
pub mod sign;
#[cfg(test)]
mod test_server;

pub use b64::{b64url, b64url_decode, b64url_into};
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
pub use jsonwebtoken::{Algorithm, Header};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
