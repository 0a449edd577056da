//! The audit trail: one record per exchange, allowed or denied, written before the answer.

use serde::Serialize;
use serde_json::Value;

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A token was issued.
    Allow,
    /// No token was issued.
    Deny,
}

impl Decision {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One audit record. Never holds a token, only facts about it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// The request id the client saw.
    pub request_id: String,
    /// Unix seconds.
    pub time: i64,
    /// `exchange` or `admin`.
    pub kind: &'static str,
    /// For exchanges.
    pub decision: Option<Decision>,
    /// Stable reason code (`issued`, `not_admitted`, `signature_invalid`…).
    pub reason: String,
    /// The client's address.
    pub client_addr: Option<String>,
    /// The policy that decided, when one did.
    pub policy: Option<String>,
    /// Inbound `iss` (as claimed, when the token was not verified).
    pub inbound_iss: Option<String>,
    /// Inbound `sub`, when verified.
    pub inbound_sub: Option<String>,
    /// Inbound `jti`, when verified.
    pub inbound_jti: Option<String>,
    /// Issued `jti`.
    pub issued_jti: Option<String>,
    /// Issued `exp`.
    pub issued_exp: Option<i64>,
    /// Further detail: requested audience and scopes, per-policy trace.
    pub detail: Value,
}
