//! The claims of a verified token, and the rules they must meet.

use serde_json::{Map, Value};

use crate::error::{InvalidToken, VerifyError};

/// The claims of a token that passed every check.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Claims {
    /// `iss`: the broker.
    pub iss: String,
    /// `sub`: the workload the broker vouches for.
    pub sub: String,
    /// `aud`, as a list (the broker sends a string when there is one).
    pub aud: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub exp: i64,
    /// `iat`, when present.
    pub iat: Option<i64>,
    /// `nbf`, when present.
    pub nbf: Option<i64>,
    /// `jti`: the token's id (what `/introspect` and revocation name).
    pub jti: Option<String>,
    /// `scope`, split on spaces.
    pub scopes: Vec<String>,
    /// `client_id`: the trust policy that admitted the workload.
    pub client_id: Option<String>,
    /// `act`: who presented the original token (RFC 8693 §4.1).
    pub act: Option<Actor>,
    /// Every claim as sent, including the policy's mapped claims.
    pub raw: Map<String, Value>,
}

/// The `act` claim: the inbound token's issuer and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Actor {
    /// The inbound token's `sub`.
    pub sub: String,
    /// The inbound token's `iss`.
    pub iss: Option<String>,
}

impl Claims {
    /// Does the token carry `scope`?
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` when the token carries every one of `required`, for checks that differ per route;
    /// otherwise [`VerifyError::InsufficientScope`].
    pub fn require_scopes<S: AsRef<str>>(
        &self,
        required: impl IntoIterator<Item = S>,
    ) -> Result<(), VerifyError> {
        let required: Vec<String> = required
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect();
        let missing: Vec<String> = required
            .iter()
            .filter(|s| !self.has_scope(s))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::InsufficientScope { required, missing })
        }
    }
}

/// What a token must say for this API to accept it.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub issuer: String,
    pub audience: String,
    pub required_scopes: Vec<String>,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: i64,
}

impl Rules {
    /// Checks the (signature-verified) claims at `now`, seconds since the epoch. Scopes come
    /// last: `insufficient_scope` is only ever said of a token that is otherwise valid.
    pub fn check(&self, raw: Map<String, Value>, now: i64) -> Result<Claims, VerifyError> {
        let iss = string(&raw, "iss")?.ok_or(InvalidToken::Issuer)?;
        // Exact comparison: no normalisation of case, trailing slashes or ports.
        if iss != self.issuer {
            return Err(InvalidToken::Issuer.into());
        }
        let aud = audiences(&raw)?;
        if !aud.contains(&self.audience) {
            return Err(InvalidToken::Audience.into());
        }
        let exp = number(&raw, "exp")?.ok_or(InvalidToken::Claim("exp"))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(InvalidToken::Expired.into());
        }
        let nbf = number(&raw, "nbf")?;
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(InvalidToken::NotYetValid.into());
        }
        let iat = number(&raw, "iat")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(InvalidToken::IssuedInFuture.into());
        }
        let claims = Claims {
            iss: iss.to_owned(),
            sub: string(&raw, "sub")?
                .ok_or(InvalidToken::Claim("sub"))?
                .to_owned(),
            aud,
            exp,
            iat,
            nbf,
            jti: string(&raw, "jti")?.map(str::to_owned),
            scopes: string(&raw, "scope")?
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: string(&raw, "client_id")?.map(str::to_owned),
            act: actor(&raw)?,
            raw,
        };
        claims.require_scopes(&self.required_scopes)?;
        Ok(claims)
    }
}

/// An optional string claim; present with another type is malformed.
fn string<'a>(
    raw: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, InvalidToken> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidToken::Claim(name)),
    }
}

/// An optional NumericDate (RFC 7519 §2): any JSON number, fractions truncated.
fn number(raw: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, InvalidToken> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
        Some(_) => Err(InvalidToken::Claim(name)),
    }
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
fn audiences(raw: &Map<String, Value>) -> Result<Vec<String>, InvalidToken> {
    let malformed = InvalidToken::Claim("aud");
    match raw.get("aud") {
        Some(Value::String(a)) => Ok(vec![a.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| a.as_str().map(str::to_owned).ok_or(malformed))
            .collect(),
        _ => Err(malformed),
    }
}

fn actor(raw: &Map<String, Value>) -> Result<Option<Actor>, InvalidToken> {
    let malformed = InvalidToken::Claim("act");
    let Some(act) = raw.get("act") else {
        return Ok(None);
    };
    let act = act.as_object().ok_or(malformed)?;
    Ok(Some(Actor {
        sub: string(act, "sub")
            .map_err(|_| malformed)?
            .ok_or(malformed)?
            .to_owned(),
        iss: string(act, "iss")
            .map_err(|_| malformed)?
            .map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn rules() -> Rules {
        Rules {
            issuer: "https://sts.example.com".into(),
            audience: "https://deploy.internal".into(),
            required_scopes: vec!["deploy:write".into()],
            leeway: 60,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://sts.example.com",
            "sub": "fake:acme/api@refs/heads/main",
            "aud": "https://deploy.internal",
            "exp": NOW + 600, "iat": NOW, "nbf": NOW,
            "jti": "j-1",
            "scope": "deploy:write artifacts:read",
            "client_id": "api-deploy",
            "act": {"iss": "https://idp.example.com", "sub": "repo:acme/api"},
            "repository": "acme/api",
        })
    }

    /// `claims()` with some members replaced (`null` removes one), checked at `NOW`.
    fn check(changes: Value) -> Result<Claims, VerifyError> {
        let mut raw = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                raw.as_object_mut().unwrap().remove(k);
            } else {
                raw[k] = v.clone();
            }
        }
        rules().check(raw.as_object().unwrap().clone(), NOW)
    }

    #[test]
    fn a_good_token_yields_its_claims() {
        let c = check(json!({})).unwrap();
        assert_eq!(c.sub, "fake:acme/api@refs/heads/main");
        assert_eq!(c.aud, ["https://deploy.internal"]);
        assert_eq!(c.scopes, ["deploy:write", "artifacts:read"]);
        assert_eq!((c.exp, c.iat, c.nbf), (NOW + 600, Some(NOW), Some(NOW)));
        assert_eq!(c.jti.as_deref(), Some("j-1"));
        assert_eq!(c.client_id.as_deref(), Some("api-deploy"));
        let act = c.act.as_ref().unwrap();
        assert_eq!(
            (act.sub.as_str(), act.iss.as_deref()),
            ("repo:acme/api", Some("https://idp.example.com"))
        );
        assert_eq!(c.raw["repository"], "acme/api");
        assert!(c.has_scope("artifacts:read") && !c.has_scope("artifacts"));
    }

    #[test]
    fn each_claim_rule() {
        use InvalidToken::*;
        let rows: Vec<(&str, Value, Option<InvalidToken>)> = vec![
            (
                "aud in an array",
                json!({"aud": ["https://x", "https://deploy.internal"]}),
                None,
            ),
            ("fractional exp", json!({"exp": NOW as f64 + 0.5}), None),
            (
                "no nbf, iat, jti, client_id, act",
                json!({"nbf": null, "iat": null, "jti": null, "client_id": null, "act": null}),
                None,
            ),
            ("expired within leeway", json!({"exp": NOW - 59}), None),
            ("nbf within leeway", json!({"nbf": NOW + 60}), None),
            (
                "other issuer",
                json!({"iss": "https://evil.example.com"}),
                Some(Issuer),
            ),
            (
                "issuer with trailing slash",
                json!({"iss": "https://sts.example.com/"}),
                Some(Issuer),
            ),
            ("no issuer", json!({"iss": null}), Some(Issuer)),
            (
                "other audience",
                json!({"aud": "https://logs.internal"}),
                Some(Audience),
            ),
            (
                "audience list without ours",
                json!({"aud": ["https://a", "https://b"]}),
                Some(Audience),
            ),
            (
                "audience prefix",
                json!({"aud": "https://deploy.internal.evil"}),
                Some(Audience),
            ),
            ("no audience", json!({"aud": null}), Some(Claim("aud"))),
            ("numeric audience", json!({"aud": [1]}), Some(Claim("aud"))),
            ("expired", json!({"exp": NOW - 60}), Some(Expired)),
            ("no exp", json!({"exp": null}), Some(Claim("exp"))),
            (
                "exp as a string",
                json!({"exp": (NOW + 600).to_string()}),
                Some(Claim("exp")),
            ),
            ("not yet valid", json!({"nbf": NOW + 61}), Some(NotYetValid)),
            ("nbf as a string", json!({"nbf": "0"}), Some(Claim("nbf"))),
            (
                "issued in the future",
                json!({"iat": NOW + 61}),
                Some(IssuedInFuture),
            ),
            ("iat as a bool", json!({"iat": true}), Some(Claim("iat"))),
            ("no sub", json!({"sub": null}), Some(Claim("sub"))),
            (
                "scope as an array",
                json!({"scope": ["deploy:write"]}),
                Some(Claim("scope")),
            ),
            (
                "act without sub",
                json!({"act": {"iss": "x"}}),
                Some(Claim("act")),
            ),
            (
                "client_id as a number",
                json!({"client_id": 1}),
                Some(Claim("client_id")),
            ),
        ];
        for (name, changes, expected) in rows {
            let got = match check(changes) {
                Ok(_) => None,
                Err(VerifyError::InvalidToken(e)) => Some(e),
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn missing_scopes_are_named() {
        let err = check(json!({"scope": "artifacts:read deploy:writer"})).unwrap_err();
        let VerifyError::InsufficientScope { required, missing } = err else {
            panic!("{err}");
        };
        assert_eq!(required, ["deploy:write"]);
        assert_eq!(missing, ["deploy:write"]);
        assert!(check(json!({"scope": null})).is_err_and(|e| e.status() == 403));
    }

    #[test]
    fn scope_is_checked_only_on_an_otherwise_valid_token() {
        let err = check(json!({"scope": "", "exp": NOW - 3600})).unwrap_err();
        assert!(
            matches!(err, VerifyError::InvalidToken(InvalidToken::Expired)),
            "{err}"
        );
    }
}
