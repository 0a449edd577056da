//! Proof before a policy change lands: `kind: PolicyTest` cases run offline through the
//! decision the server makes (`crate::exchange::decide`) and the claims it would issue
//! (`crate::exchange::issued_claims`), never through a copy of either.
//!
//! The claims of a case are taken as already validated: no signature, no identity provider,
//! and `exp`/`nbf`/`iat` are not checked. Everything after validation is the server's.

mod case;
mod expect;
pub mod junit;
mod suite;

pub use case::{Actual, Case};
pub use suite::{CaseResult, Suite, check};

use crate::exchange::Lifetimes;

/// What the broker's configuration adds to an issued token: its `iss`, and lifetimes.
#[derive(Debug, Clone)]
pub struct Minting {
    /// The broker's `iss` (`issuer_url`).
    pub issuer_url: String,
    /// `default_ttl` and `max_ttl`.
    pub lifetimes: Lifetimes,
}
