//! Verifying the broker's own tokens (admin bearer tokens, introspection callers).

use serde_json::{Map, Value};

use super::KeyRing;
use crate::jose::jws;

/// Leeway for the broker's own `nbf`/`exp` when it accepts its tokens as credentials (its
/// replicas' clocks may differ a little). Introspection answers with none: the broker is the
/// authority on its own tokens' lifetimes.
pub const CREDENTIAL_LEEWAY_SECS: i64 = 30;

impl KeyRing {
    /// The claims of `token` if the broker issued it with a published key, for `audience`
    /// (any audience when `None`), and it is current at `now`; `None` otherwise (callers
    /// never learn which check failed).
    pub fn verify_own(
        &self,
        token: &str,
        issuer_url: &str,
        audience: Option<&str>,
        now: i64,
        leeway: i64,
    ) -> Option<Map<String, Value>> {
        let jws = jws::decode(token).ok()?;
        if jws.header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
            return None;
        }
        let kid = jws.header.get("kid")?.as_str()?;
        let key = self.published.iter().find(|k| k.kid == kid)?;
        if jws.header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
            return None;
        }
        if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
            return None;
        }
        let claims = jws.claims;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let current = number("exp").is_some_and(|exp| now < exp + leeway)
            && number("nbf").is_none_or(|nbf| nbf <= now + leeway);
        let ours = claims.get("iss").and_then(Value::as_str) == Some(issuer_url);
        let for_us = match (audience, claims.get("aud")) {
            (None, Some(Value::String(_) | Value::Array(_))) => true,
            (Some(audience), Some(Value::String(a))) => a == audience,
            (Some(audience), Some(Value::Array(list))) => {
                list.iter().any(|a| a.as_str() == Some(audience))
            }
            _ => false,
        };
        (current && ours && for_us).then_some(claims)
    }
}

/// The scopes a token carries.
pub fn scopes(claims: &Map<String, Value>) -> impl Iterator<Item = &str> {
    claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
}
