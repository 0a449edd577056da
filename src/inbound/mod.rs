//! Inbound token validation: is this subject token genuinely from a registered issuer,
//! meant for us, and current?

pub mod keys;
mod validate;

pub use keys::IssuerKeys;
pub use validate::{InboundError, Validated, Validator};
