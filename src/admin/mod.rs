//! Administration: who may administer (and who may introspect), and the stored documents
//! admins change. Transport-free; `http::admin` maps requests onto it. Keys and revocations
//! are changed through their own services ([`crate::mint::SigningKeys`],
//! [`crate::revocation::Revocations`]); their errors meet here as [`AdminError`].

mod auth;
mod documents;
mod precondition;

pub use auth::{Access, AuthError, Authenticator, Principal};
pub use documents::{ApplyReport, DocumentView, Documents};
pub use precondition::Precondition;

use crate::mint::KeyRingError;
use crate::revocation::RevokeError;
use crate::storage::StorageError;
use crate::trail::AuditError;

/// Why an admin request failed. The messages are for admins, who may see details.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request or document is invalid; every reason is listed.
    #[error("invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No such document.
    #[error("not found")]
    NotFound,
    /// `If-Match` admits no stored version.
    #[error("the document changed since it was read (If-Match does not match)")]
    PreconditionFailed,
    /// The request conflicts with the current state (e.g. a rotation too soon).
    #[error("{0}")]
    Conflict(String),
    /// The database failed, or the change's audit record could not be committed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict { .. } => AdminError::PreconditionFailed,
            other => AdminError::Unavailable(other.to_string()),
        }
    }
}

impl From<AuditError> for AdminError {
    fn from(e: AuditError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

impl From<KeyRingError> for AdminError {
    fn from(e: KeyRingError) -> Self {
        match e {
            KeyRingError::Storage(StorageError::Conflict { .. }) => AdminError::Conflict(
                "another rotation happened at the same time; list the keys and retry".into(),
            ),
            KeyRingError::TooSoon { .. } => AdminError::Conflict(e.to_string()),
            other => AdminError::Unavailable(other.to_string()),
        }
    }
}

impl From<RevokeError> for AdminError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::Invalid(reasons) => AdminError::Invalid(reasons),
            RevokeError::Storage(e) => e.into(),
            RevokeError::Audit(e) => e.into(),
        }
    }
}
