//! Offline verification of sts-broker access tokens, for the APIs that trust the broker.
//!
//! ```no_run
//! # async fn example(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use sts_verifier::Verifier;
//!
//! let verifier = Verifier::builder("https://sts.example.com")
//!     .audience("https://deploy.internal")
//!     .required_scopes(["deploy:write"])
//!     .build()?;
//! let claims = verifier.verify(token).await?;
//! println!("{} via policy {:?}", claims.sub, claims.client_id);
//! # Ok(())
//! # }
//! ```
//!
//! The broker's keys come from its discovery document (`/.well-known/openid-configuration`,
//! whose `issuer` must equal the configured one) and the `jwks_uri` it names, cached as the
//! broker's `Cache-Control` says. A token is checked in this order: size and shape, header
//! (`typ` `at+jwt`, allowed `alg`, no `crit`, a `kid`), key and signature, then `iss`, `aud`,
//! `exp`/`nbf`/`iat` with leeway, then required scopes.
//!
//! Offline checks cannot see revocation: an API that must honour revoked tokens before they
//! expire asks the broker's `/introspect` endpoint instead.
//!
//! With the `actix` feature, [`actix::BrokerToken`] is an extractor that answers 401/403
//! with RFC 6750 challenges.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "actix")]
pub mod actix;
mod alg;
mod claims;
mod error;
mod jws;
#[cfg(test)]
mod test_keys;
mod verifier;

pub use alg::Algorithm;
pub use claims::{Actor, Claims};
pub use error::{BuildError, FetchError, InvalidToken, VerifyError};
pub use jws::MAX_TOKEN_BYTES;
pub use verifier::{Verifier, VerifierBuilder};
