//! Administration: who may administer, and what they can do (documents, explanations,
//! the audit trail). Transport-free; `http::admin` maps requests onto it.

mod auth;
mod documents;
mod explain;
mod keys;
mod revoke;

pub use auth::{Access, AuthError, Principal, authenticate};
pub use documents::{ApplyReport, DocumentView};
pub use explain::Explanation;
pub use revoke::RevokeRequest;

use serde_json::{Value, json};

use crate::audit::AuditEvent;
use crate::storage::{Storage, StorageError};

/// Why an admin request failed. The messages are for admins, who may see details.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request or document is invalid; every reason is listed.
    #[error("invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No such document.
    #[error("not found")]
    NotFound,
    /// `If-Match` named another version.
    #[error("the document changed since it was read (If-Match does not match)")]
    PreconditionFailed,
    /// The request conflicts with the current state (e.g. a rotation too soon).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Storage(StorageError),
}

/// Writes the audit record of an admin change (before the answer, as for exchanges).
async fn record_change(
    store: &dyn Storage,
    who: &Principal,
    request_id: &str,
    action: &str,
    mut detail: Value,
    now: i64,
) -> Result<(), AdminError> {
    detail["actor"] = json!(who.name);
    let event = AuditEvent {
        request_id: request_id.to_owned(),
        time: now,
        kind: "admin".into(),
        decision: None,
        reason: action.to_owned(),
        client_addr: None,
        policy: None,
        inbound_iss: None,
        inbound_sub: Some(who.name.clone()),
        inbound_jti: None,
        issued_jti: None,
        issued_exp: None,
        detail,
    };
    store.append_audit(std::slice::from_ref(&event)).await?;
    tracing::info!(request_id, actor = %who.name, action, "admin change");
    Ok(())
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict { .. } => AdminError::PreconditionFailed,
            other => AdminError::Storage(other),
        }
    }
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 3339 (or Unix seconds) to seconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2026-11-23T20:00:00Z"), Some(1795464000));
        assert_eq!(parse_time("1795464000"), Some(1795464000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
