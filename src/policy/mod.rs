//! Trust policies: the documents admins write, their validation, and how a token is judged.

pub mod claim_path;
pub mod current;
pub mod document;
pub mod github;
pub mod index;
pub mod issuer;
pub mod lint;
pub mod load;
pub mod matcher;
pub mod owner;
pub mod parse;
pub mod set;
pub mod template;
pub mod test_case;
pub mod trust;

pub use current::CurrentPolicies;
pub use document::{GitHubAppDoc, IssuerDoc, Kind, MatcherDoc, TrustPolicyDoc};
pub use issuer::Issuer;
pub use set::{DocError, Limits, PolicySet};
pub use trust::{Check, TrustPolicy};

/// Names are identifiers in URLs, logs and `client_id`: keep them plain.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (1-128 of A-Z a-z 0-9 - _ ., not starting with '.')"
        ))
    }
}
