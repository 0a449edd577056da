//! Verifying the broker's own tokens (admin bearer tokens, introspection callers).

use serde_json::{Map, Value};

use super::KeyRing;
use crate::jose::{header, jws};

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
        // The header rules every verifier of the broker's tokens applies (the JOSE core's, as
        // in sts-verifier), the algorithm pinned to the named key's.
        let jws = jws::decode(token).ok()?;
        if !header::is_access_token(&jws.header) {
            return None;
        }
        let kid = jws.header.get("kid")?.as_str()?;
        let key = self.published.iter().find(|k| k.kid == kid)?;
        header::check(&jws.header, &[key.jose_alg()]).ok()?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::jose::b64url;
    use crate::mint::SigningAlgorithm;
    use crate::mint::signing_key::SigningKey;

    const ISS: &str = "https://sts.example";

    fn ring() -> (KeyRing, Arc<SigningKey>) {
        let key = Arc::new(SigningKey::generate(SigningAlgorithm::ES256).unwrap().0);
        (KeyRing::new(key.clone(), vec![key.clone()]), key)
    }

    fn token(key: &SigningKey, header: Value) -> String {
        let claims = json!({"iss": ISS, "aud": "x", "exp": 2_000, "sub": "s"});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = key.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64url(&signature))
    }

    /// The broker's own tokens pass the same header rules as in `sts-verifier`.
    #[test]
    fn own_tokens_follow_the_access_token_header_rules() {
        let (ring, key) = ring();
        let verify = |header: Value| ring.verify_own(&token(&key, header), ISS, None, 1_000, 0);
        let kid = key.kid.clone();
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(
                verify(json!({"alg": "ES256", "kid": kid, "typ": typ})).is_some(),
                "{typ}"
            );
        }
        for refused in [
            json!({"alg": "ES256", "kid": kid, "typ": "JWT"}),
            json!({"alg": "ES256", "kid": kid}),
            json!({"alg": "ES256", "kid": kid, "typ": "at+jwt", "crit": ["exp"]}),
            json!({"alg": "ES256", "kid": kid, "typ": "at+jwt", "cty": "JWT"}),
            json!({"alg": "RS256", "kid": kid, "typ": "at+jwt"}),
            json!({"alg": "ES256", "kid": "other", "typ": "at+jwt"}),
        ] {
            assert!(verify(refused.clone()).is_none(), "{refused}");
        }
    }
}
