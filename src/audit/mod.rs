//! An audit record: what is kept of each exchange, allowed or denied, and of each admin
//! change. How records are made durable, indexed and read is [`crate::trail`].

mod bounds;
pub mod claims;

pub use bounds::{AUDIENCE_BYTES, IDENTIFIER_BYTES, SCOPE_BYTES, SCOPES, SUBJECT_BYTES, clip};
pub use claims::{CLAIMS_BYTES, KeptClaims};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The request id the client saw.
    pub request_id: String,
    /// Unix seconds.
    pub time: i64,
    /// An exchange or an admin change.
    pub kind: AuditKind,
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
    /// Further detail: requested audience and scopes, the validated inbound claims of an
    /// exchange that reached a policy (`claims`, with `claims_dropped` when bounded),
    /// per-policy trace.
    pub detail: Value,
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A token exchange, allowed or denied.
    Exchange,
    /// A change made by an admin (documents, keys, revocations).
    Admin,
}

impl AuditKind {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Exchange => "exchange",
            AuditKind::Admin => "admin",
        }
    }

    /// Parses `exchange` / `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "exchange" => Some(AuditKind::Exchange),
            "admin" => Some(AuditKind::Admin),
            _ => None,
        }
    }
}

/// Who made an admin change, and in which request: what its audit record names.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// `bootstrap-admin`, or the `sub` of the admin's broker token.
    pub name: &'a str,
    /// The request that made the change.
    pub request_id: &'a str,
}

impl AuditEvent {
    /// The record of an admin change: `action` (`put`, `rotate_keys`, `revoke`…) with its
    /// details, made by `actor` at `now`.
    pub fn admin_change(actor: Actor<'_>, action: &str, mut detail: Value, now: i64) -> Self {
        detail["actor"] = json!(actor.name);
        AuditEvent {
            request_id: actor.request_id.to_owned(),
            time: now,
            kind: AuditKind::Admin,
            decision: None,
            reason: action.to_owned(),
            client_addr: None,
            policy: None,
            inbound_iss: None,
            inbound_sub: Some(actor.name.to_owned()),
            inbound_jti: None,
            issued_jti: None,
            issued_exp: None,
            detail,
        }
    }
}

/// Filters of an audit query; every one is optional and they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events at or after this Unix time.
    pub since: Option<i64>,
    /// Events before this Unix time.
    pub until: Option<i64>,
    /// Only allowed or only denied exchanges.
    pub decision: Option<Decision>,
    /// Only this policy.
    pub policy: Option<String>,
    /// Only this inbound subject.
    pub subject: Option<String>,
    /// Only this reason code (`issued`, `not_admitted`…).
    pub reason: Option<String>,
    /// Only exchanges or only admin changes.
    pub kind: Option<AuditKind>,
    /// Page cursor: events older than this id.
    pub before_id: Option<i64>,
    /// Newest first by time (then id) rather than by id, the cursor being `before_time` with
    /// `before_id`: the time index then bounds each page's scan to `since`, however much
    /// older log there is (by id, a page that `since` leaves short reads to the log's start).
    pub by_time: bool,
    /// With `by_time`: the page cursor's time.
    pub before_time: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// An audit event as stored, with its id (the page cursor).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// Monotonic id.
    pub id: i64,
    /// The event.
    pub event: AuditEvent,
}

impl Decision {
    /// Parses `allow` / `deny`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}
