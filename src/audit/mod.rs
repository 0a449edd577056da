//! An audit record: what is kept of each exchange, allowed or denied, and of each admin
//! change. How records are made durable, indexed and read is [`crate::trail`].

mod bounds;
pub mod claims;

pub use bounds::{AUDIENCE_BYTES, IDENTIFIER_BYTES, SCOPE_BYTES, SCOPES, SUBJECT_BYTES, clip};
pub use claims::{CLAIMS_BYTES, KeptClaims};

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
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
#[derive(Debug, Clone, Deserialize)]
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
    /// `detail.claims` as the token's own JSON text, when kept that way
    /// ([`claims::keep_text`]); written into `detail` when the record is serialized
    /// ([`AuditEvent::full_detail`]). Records read back carry their claims in `detail`.
    #[serde(skip)]
    pub claims_text: Option<Box<RawValue>>,
}

impl Serialize for AuditEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("AuditEvent", 13)?;
        record.serialize_field("request_id", &self.request_id)?;
        record.serialize_field("time", &self.time)?;
        record.serialize_field("kind", &self.kind)?;
        record.serialize_field("decision", &self.decision)?;
        record.serialize_field("reason", &self.reason)?;
        record.serialize_field("client_addr", &self.client_addr)?;
        record.serialize_field("policy", &self.policy)?;
        record.serialize_field("inbound_iss", &self.inbound_iss)?;
        record.serialize_field("inbound_sub", &self.inbound_sub)?;
        record.serialize_field("inbound_jti", &self.inbound_jti)?;
        record.serialize_field("issued_jti", &self.issued_jti)?;
        record.serialize_field("issued_exp", &self.issued_exp)?;
        record.serialize_field("detail", &self.full_detail())?;
        record.end()
    }
}

/// A record's `detail` with its kept claims, as stored.
pub struct FullDetail<'a> {
    detail: &'a Value,
    claims_text: Option<&'a RawValue>,
}

impl Serialize for FullDetail<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (Value::Object(fields), Some(claims)) = (self.detail, self.claims_text) else {
            return self.detail.serialize(serializer);
        };
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        for (name, value) in fields.iter().filter(|(name, _)| *name != "claims") {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("claims", claims)?;
        map.end()
    }
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
    /// `detail` as stored: with the claims kept as text, when they were.
    pub fn full_detail(&self) -> FullDetail<'_> {
        FullDetail {
            detail: &self.detail,
            claims_text: self.claims_text.as_deref(),
        }
    }

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
            claims_text: None,
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
