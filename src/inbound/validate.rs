//! The checks a subject token must pass before any policy looks at it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sts_jose::header::{self, HeaderError};
use sts_jose::jws::{self, DecodeError};

use super::keys::{IssuerKeys, KeyError};
use crate::jose::alg::ASYMMETRIC;
use crate::policy::{Issuer, PolicySet};

/// A subject token that passed every check.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Its issuer.
    pub issuer: Arc<Issuer>,
    /// Its claims.
    pub claims: Map<String, Value>,
    /// The JSON text the claims were read from; `None` when they were not read from a token
    /// (a policy test case, a recorded exchange decided again).
    pub payload: Option<String>,
    /// `sub`.
    pub subject: String,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// `exp`.
    pub exp: i64,
}

/// Why a subject token was refused. The `Display` text is safe to show the client.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// Could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Header says something we refuse.
    #[error("subject token header is not acceptable: {0}")]
    Header(&'static str),
    /// No `iss`, or one that is not registered.
    #[error("subject token issuer is not registered")]
    UnknownIssuer {
        /// The claimed issuer, for the audit log.
        iss: Option<String>,
    },
    /// `alg` not accepted for this issuer.
    #[error("subject token algorithm is not accepted for its issuer")]
    Algorithm,
    /// No key could verify it.
    #[error("subject token signature cannot be verified: {0}")]
    Key(&'static str),
    /// The signature is wrong.
    #[error("subject token signature is invalid")]
    Signature,
    /// A claim is missing, of the wrong type, or out of range.
    #[error("subject token {0}")]
    Claims(&'static str),
    /// The issuer's keys cannot be had (maps to 503).
    #[error("the subject token issuer's keys are temporarily unavailable")]
    Unavailable {
        /// Until the next fetch of the keys may start: a retry before then cannot succeed.
        retry_after: Duration,
    },
}

impl InboundError {
    /// A stable reason code for the audit log and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Decode(DecodeError::TooLarge) => "token_too_large",
            Self::Decode(_) => "token_malformed",
            Self::Header(_) => "token_header",
            Self::UnknownIssuer { .. } => "issuer_unregistered",
            Self::Algorithm => "algorithm_refused",
            Self::Key(_) => "key_not_found",
            Self::Signature => "signature_invalid",
            Self::Claims(_) => "claims_invalid",
            Self::Unavailable { .. } => "issuer_keys_unavailable",
        }
    }
}

/// Validates subject tokens.
pub struct Validator {
    keys: IssuerKeys,
    leeway: i64,
}

impl Validator {
    /// A validator using `keys`, allowing `leeway` of clock skew.
    pub fn new(keys: IssuerKeys, leeway: Duration) -> Self {
        Self {
            keys,
            leeway: leeway.as_secs() as i64,
        }
    }

    /// Checks `token` against the registered issuers of `set`, at time `now` (Unix seconds).
    ///
    /// Nothing is fetched for a token whose `iss` is not registered: the token's own claims
    /// never choose a URL to fetch (SSRF). No span of its own: it runs once per exchange,
    /// whose log line already carries the request id, and a fetch has its own span.
    pub async fn validate(
        &self,
        set: &PolicySet,
        token: &str,
        now: i64,
    ) -> Result<Validated, InboundError> {
        let jws = jws::decode(token)?;
        let header = header::check(&jws.header, &ASYMMETRIC).map_err(header_error)?;
        let (alg, kid) = (header.alg, header.kid.as_deref());
        let iss = jws.claims.get("iss").and_then(Value::as_str);
        let issuer = iss
            .and_then(|iss| set.issuer_by_url(iss))
            .ok_or_else(|| InboundError::UnknownIssuer {
                iss: iss.map(str::to_owned),
            })?
            .clone();
        if !issuer.algorithms.contains(&alg) {
            return Err(InboundError::Algorithm);
        }
        let verified = self
            .keys
            .with_key(&issuer, alg, kid, |key| {
                key.verify(jws.signing_input.as_bytes(), &jws.signature)
            })
            .await
            .map_err(|e| match e {
                KeyError::UnknownKid => InboundError::Key("no published key has its kid"),
                KeyError::Ambiguous => {
                    InboundError::Key("it has no kid and the issuer has several keys")
                }
                KeyError::DuplicateKid => {
                    InboundError::Key("the issuer publishes its kid more than once")
                }
                KeyError::Unavailable(e) => InboundError::Unavailable {
                    retry_after: e.retry_after,
                },
            })?;
        if !verified {
            return Err(InboundError::Signature);
        }
        let checked = check_claims(&jws.claims, &issuer, now, self.leeway)?;
        Ok(Validated {
            issuer,
            subject: checked.subject,
            jti: checked.jti,
            exp: checked.exp,
            claims: jws.claims,
            payload: Some(jws.payload),
        })
    }
}

/// The header rules are the JOSE core's (`alg` asymmetric, no `crit`, no encrypted,
/// compressed or nested content, a short `kid`); key hints in the header (`jku`, `x5u`,
/// `jwk`, `x5c`) are never used: keys come only from the issuer's registered JWKS.
fn header_error(e: HeaderError) -> InboundError {
    match e {
        HeaderError::NoAlg => InboundError::Header("no alg"),
        HeaderError::Algorithm => InboundError::Algorithm,
        HeaderError::Critical => InboundError::Header("crit extensions are not supported"),
        HeaderError::Encrypted => {
            InboundError::Header("encrypted or compressed tokens are not accepted")
        }
        HeaderError::Nested => InboundError::Header("nested tokens are not accepted"),
        HeaderError::Kid => InboundError::Header("kid must be a short string"),
        HeaderError::Malformed => InboundError::Header("a registered member has the wrong type"),
    }
}

struct Checked {
    subject: String,
    jti: Option<String>,
    exp: i64,
}

fn check_claims(
    claims: &Map<String, Value>,
    issuer: &Issuer,
    now: i64,
    leeway: i64,
) -> Result<Checked, InboundError> {
    let bad = InboundError::Claims;
    // RFC 7519 NumericDate: a JSON number. A string or anything else is refused, never
    // skipped (the CVE-2026-25537 class of bug).
    let time = |name: &str| -> Result<Option<i64>, InboundError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < 1e15)
                        .map(|f| f as i64)
                })
                .map(Some)
                .ok_or(bad("has an out-of-range time claim")),
            Some(_) => Err(bad("has a time claim that is not a number")),
        }
    };
    let exp = time("exp")?.ok_or(bad("has no exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(bad("is expired"));
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(bad("is not valid yet"));
    }
    let iat = time("iat")?;
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(bad("was issued in the future"));
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if lifetime > issuer.max_token_lifetime.as_secs() as i64 {
        return Err(bad("lives longer than its issuer allows"));
    }
    check_audience(claims.get("aud"), &issuer.audiences)?;
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("has no sub")),
    };
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => Some(j.clone()),
        Some(_) => return Err(bad("has an invalid jti")),
    };
    if issuer.replay_protection && jti.is_none() {
        return Err(bad("has no jti and its issuer requires one"));
    }
    Ok(Checked { subject, jti, exp })
}

/// `aud` is a string or an array of strings; one of them must be an accepted audience.
fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), InboundError> {
    let ok = |a: &str| accepted.iter().any(|x| x == a);
    match aud {
        Some(Value::String(a)) if ok(a) => Ok(()),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            if list.iter().filter_map(Value::as_str).any(ok) {
                Ok(())
            } else {
                Err(InboundError::Claims("is not meant for this broker (aud)"))
            }
        }
        Some(Value::String(_)) => Err(InboundError::Claims("is not meant for this broker (aud)")),
        None => Err(InboundError::Claims("has no aud")),
        Some(_) => Err(InboundError::Claims("has an invalid aud")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::IssuerDoc;
    use serde_json::json;

    fn issuer() -> Issuer {
        let doc: IssuerDoc = serde_json::from_value(json!({
            "name": "i", "url": "https://i.example", "audiences": ["sts"]
        }))
        .unwrap();
        Issuer::compile(&doc, false).unwrap()
    }

    fn check(claims: Value) -> Result<Checked, InboundError> {
        check_claims(claims.as_object().unwrap(), &issuer(), 1_000_000, 60)
    }

    #[test]
    fn claim_table() {
        let ok = json!({"sub": "s", "aud": "sts", "exp": 1_000_100, "iat": 999_990});
        assert!(check(ok.clone()).is_ok());
        let with = |k: &str, v: Value| {
            let mut c = ok.clone();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = ok.clone();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        let rejected = [
            ("exp string", with("exp", json!("never"))),
            ("exp missing", without("exp")),
            ("expired", with("exp", json!(999_000))),
            ("nbf future", with("nbf", json!(1_000_500))),
            ("nbf string", with("nbf", json!("0"))),
            ("iat future", with("iat", json!(1_000_500))),
            ("iat bool", with("iat", json!(true))),
            (
                "lifetime too long",
                with("iat", json!(1_000_100 - 25 * 3600)),
            ),
            ("aud empty array", with("aud", json!([]))),
            ("aud wrong", with("aud", json!("other"))),
            ("aud number", with("aud", json!(5))),
            ("aud mixed array", with("aud", json!(["sts", 5]))),
            ("sub missing", without("sub")),
            ("sub number", with("sub", json!(5))),
            ("exp huge float", with("exp", json!(1e300))),
        ];
        for (name, claims) in rejected {
            assert!(check(claims).is_err(), "{name} should be rejected");
        }
        assert!(check(with("aud", json!(["other", "sts"]))).is_ok());
        assert!(check(with("exp", json!(999_950))).is_ok(), "within leeway");
        assert!(check(without("iat")).is_ok());
    }

    #[test]
    fn header_table() {
        let h = |v: Value| header::check(v.as_object().unwrap(), &ASYMMETRIC).map_err(header_error);
        assert!(h(json!({"alg": "RS256", "kid": "k"})).is_ok());
        assert!(matches!(
            h(json!({"alg": "none"})),
            Err(InboundError::Algorithm)
        ));
        assert!(matches!(
            h(json!({"alg": "HS256"})),
            Err(InboundError::Algorithm)
        ));
        assert!(h(json!({"alg": "RS256", "crit": ["exp"]})).is_err());
        assert!(h(json!({"alg": "RS256", "cty": "JWT"})).is_err());
        assert!(h(json!({"alg": "RS256", "kid": 5})).is_err());
        assert!(h(json!({"alg": "RS256", "kid": "x".repeat(300)})).is_err());
        assert!(h(json!({"kid": "k"})).is_err());
    }
}
