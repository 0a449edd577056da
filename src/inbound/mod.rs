//! Inbound token validation: is this subject token genuinely from a registered issuer,
//! meant for us, and current?

pub mod cache;
pub mod fetch;
pub mod jws;
pub mod keys;
mod validate;

pub use cache::{CachePolicy, KeyCache};
pub use fetch::Fetcher;
pub use validate::{InboundError, Validated, Validator};
