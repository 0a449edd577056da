//! One recorded exchange decided again: under the policies in force and under the candidate
//! set, by the exchange's own [`decide`] (policy choice, audience, scopes, guarded events,
//! owner pins), from the validated claims its audit record keeps.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::audit::AuditEvent;
use crate::exchange::{ExchangeRequest, Trace, decide};
use crate::inbound::Validated;
use crate::policy::PolicySet;

/// Reasons of exchanges that a policy judged: only these are decided again. Every other
/// denial (invalid token, rate limit, replay, an expired token at issue) came before or
/// after the policy decision, and no policy change alters it.
const JUDGED: &[&str] = &[
    "issued",
    "not_admitted",
    "audience_required",
    "audience_not_granted",
    "scope_not_granted",
];

/// Whether a record is one a preview decides again (and so needs its whole event).
pub fn is_judged(event: &AuditEvent) -> bool {
    JUDGED.contains(&event.reason.as_str())
}

/// A recorded exchange, ready to be decided again.
pub struct Recorded {
    /// Its request id.
    pub request_id: String,
    iss: String,
    claims: Map<String, Value>,
    request: ExchangeRequest,
}

impl Recorded {
    /// The exchange a record describes; `None` when it cannot be decided again (not judged
    /// by a policy, or recorded before records kept claims).
    pub fn from_event(event: AuditEvent) -> Option<Self> {
        if !is_judged(&event) {
            return None;
        }
        let AuditEvent {
            request_id,
            inbound_iss,
            mut detail,
            ..
        } = event;
        let Value::Object(claims) = detail.get_mut("claims")?.take() else {
            return None;
        };
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let scopes = detail["scope"].as_array().map(|scopes| {
            scopes
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        });
        Some(Self {
            request_id,
            iss: inbound_iss?,
            claims,
            request: ExchangeRequest {
                subject_token: String::new(),
                audience: text(&detail["audience"]),
                scopes,
                policy: text(&detail["policy"]),
                bare_github_target: detail["bare_github_target"].as_bool().unwrap_or(false),
            },
        })
    }
}

/// How one policy set decides a recorded exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed?
    pub allow: bool,
    /// The admitting policy; for a denial, the policy that admitted the token but could not
    /// grant the request, if one did.
    pub policy: Option<String>,
    /// The audit reason code (`issued`, `not_admitted`…).
    pub reason: &'static str,
}

impl Verdict {
    /// Whether `after` differs from `self` in what an admin cares about: the decision, or
    /// which policy admits.
    pub fn changed_to(&self, after: &Verdict) -> bool {
        self.allow != after.allow || (self.allow && self.policy != after.policy)
    }
}

/// Decides `recorded` under `before` and under `after`.
pub fn redecide(recorded: Recorded, before: &PolicySet, after: &PolicySet) -> (Verdict, Verdict) {
    let mut token = Validated {
        issuer: Arc::clone(match before.issuer_by_url(&recorded.iss) {
            Some(issuer) => issuer,
            None => match after.issuer_by_url(&recorded.iss) {
                Some(issuer) => issuer,
                None => return (unregistered(), unregistered()),
            },
        }),
        // Map's index panics on a missing key; a recorded claim set may lack any of these.
        subject: text(&recorded.claims, "sub").unwrap_or_default(),
        jti: text(&recorded.claims, "jti"),
        exp: recorded
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        claims: recorded.claims,
        payload: None,
    };
    let first = judge(before, &mut token, &recorded.request);
    let second = judge(after, &mut token, &recorded.request);
    (first, second)
}

/// One set's decision; the token's issuer is that set's issuer of the recorded URL.
fn judge(set: &PolicySet, token: &mut Validated, request: &ExchangeRequest) -> Verdict {
    let Some(issuer) = set.issuer_by_url(&token.issuer.url) else {
        return unregistered();
    };
    if !Arc::ptr_eq(issuer, &token.issuer) {
        token.issuer = Arc::clone(issuer);
    }
    let mut trace = Trace::outcomes();
    match decide(set, token, request, Some(&mut trace)) {
        Ok(decided) => Verdict {
            allow: true,
            policy: Some(decided.policy.name.clone()),
            reason: "issued",
        },
        Err(e) => Verdict {
            allow: false,
            policy: trace.denying_policy().map(str::to_owned),
            reason: e.code(),
        },
    }
}

fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn unregistered() -> Verdict {
    Verdict {
        allow: false,
        policy: None,
        reason: "issuer_unregistered",
    }
}
