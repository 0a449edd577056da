//! The claims of an issued token, computed from the decision alone: no key, no clock, no
//! randomness of its own. `/token` signs what this returns; `policy test` compares it with a
//! test's expectation, so both see the same token.

use serde_json::{Map, Value, json};

use super::{Decided, Lifetimes};
use crate::inbound::Validated;

/// What the broker puts in an issued token.
#[derive(Debug, Clone)]
pub struct IssuedClaims {
    /// Every claim of the token (the policy's mapped claims, then the standard ones).
    pub claims: Map<String, Value>,
    /// Its `exp`.
    pub exp: i64,
    /// Its `scope`, space-separated.
    pub scope: String,
}

/// The claims of the token that `decided` grants to `token` at `now`, as issuer
/// `issuer_url`, identified by `jti`.
pub fn issued_claims(
    issuer_url: &str,
    lifetimes: Lifetimes,
    token: &Validated,
    decided: &Decided,
    now: i64,
    jti: &str,
) -> IssuedClaims {
    let ttl = decided
        .policy
        .grant
        .ttl
        .unwrap_or(lifetimes.default_ttl)
        .min(lifetimes.max_ttl);
    // Never past the subject token's own exp: an exchange must not extend a credential.
    let exp = now.saturating_add(ttl.as_secs() as i64).min(token.exp);
    let scope = decided.scopes.join(" ");
    let mut claims: Map<String, Value> = decided.rendered.claims.clone();
    // The standard claims come last so that no mapped claim can replace them.
    let standard = json!({
        "iss": issuer_url,
        "sub": format!("{}{}", token.issuer.subject_prefix, decided.rendered.subject),
        "aud": decided.audience,
        "exp": exp,
        "iat": now,
        "nbf": now,
        "jti": jti,
        "scope": scope,
        "client_id": decided.policy.name,
        "act": {"iss": token.issuer.url, "sub": token.subject},
    });
    if let Value::Object(standard) = standard {
        claims.extend(standard);
    }
    IssuedClaims { claims, exp, scope }
}
