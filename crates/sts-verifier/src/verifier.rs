//! The verifier: configuration, and the order in which a token is checked.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use sts_jose::cache::{CachePolicy, Discovery, KeyCache, KeySource, Refresh};
use sts_jose::fetch::Fetcher;
use sts_jose::jwks::{KeySet, Lookup};

use crate::claims::{Claims, Rules};
use crate::error::{BuildError, InvalidToken, VerifyError};
use crate::{Algorithm, jws};

/// Verifies the broker's access tokens offline, with keys from its discovery document.
///
/// Build one per (broker, audience) at start-up and share it: it holds the key cache.
#[derive(Debug)]
pub struct Verifier {
    rules: Rules,
    algorithms: Vec<Algorithm>,
    keys: KeyCache,
}

impl Verifier {
    /// Starts configuring a verifier for the broker whose `iss` is `issuer_url` (compared
    /// exactly, so write it as the broker's `issuer_url` says).
    pub fn builder(issuer_url: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer_url.into(),
            audience: None,
            required_scopes: Vec::new(),
            leeway: Duration::from_secs(60),
            algorithms: Algorithm::ALL.to_vec(),
            refetch_cooldown: Duration::from_secs(30),
            default_cache_ttl: Duration::from_secs(300),
            http_timeout: Duration::from_secs(10),
        }
    }

    /// The claims of `token` if it is a current broker access token for this audience with
    /// every required scope.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let jws = jws::decode(token, &self.algorithms)?;
        let (alg, kid) = (jws.alg.jose(), jws.kid.as_str());
        let keys = self
            .keys
            .keys(|set| set.has(alg, Some(kid)))
            .await
            .map_err(|e| VerifyError::KeysUnavailable(e.error))?;
        self.check(jws, &keys, sts_jose::unix_now())
    }

    /// The audience tokens must name.
    pub fn audience(&self) -> &str {
        &self.rules.audience
    }

    /// The scopes every token must carry.
    pub fn required_scopes(&self) -> &[String] {
        &self.rules.required_scopes
    }

    /// Signature, then claims: nothing in the payload is believed before the key has spoken.
    fn check(&self, jws: jws::Jws<'_>, keys: &KeySet, now: i64) -> Result<Claims, VerifyError> {
        let key = match keys.find(jws.alg.jose(), Some(&jws.kid)) {
            Lookup::Found(key) => key,
            // The header's alg must be the key's own: a token never chooses how its key is used.
            Lookup::WrongAlgorithm => return Err(InvalidToken::KeyMismatch.into()),
            // A kid the broker publishes twice names no key: it is not this verifier's place
            // to guess which one the broker meant.
            Lookup::UnknownKid | Lookup::DuplicateKid | Lookup::Ambiguous => {
                return Err(InvalidToken::UnknownKey.into());
            }
        };
        if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
            return Err(InvalidToken::Signature.into());
        }
        self.rules.check(jws.claims, now)
    }
}

/// Configures a [`Verifier`]; see [`Verifier::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifierBuilder {
    issuer: String,
    audience: Option<String>,
    required_scopes: Vec<String>,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
    refetch_cooldown: Duration,
    default_cache_ttl: Duration,
    http_timeout: Duration,
}

impl VerifierBuilder {
    /// The audience this API answers to (required): tokens whose `aud` does not hold it are
    /// refused, so a token the broker issued for another API cannot be replayed here.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Scopes every token must carry (none by default).
    pub fn required_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The algorithms accepted (default all three the broker can sign with). Pin the one your
    /// broker uses to refuse any other outright.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Least time between two JWKS fetches, however many unknown `kid`s arrive (default 30 s).
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.refetch_cooldown = cooldown;
        self
    }

    /// How long keys are fresh when the JWKS response has no `max-age` (default 5 min).
    pub fn default_cache_ttl(mut self, ttl: Duration) -> Self {
        self.default_cache_ttl = ttl;
        self
    }

    /// Deadline of one key fetch, discovery and JWKS together (also each request's connect
    /// and whole-request timeout; default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Checks the settings and builds the verifier. Nothing is fetched yet: the first
    /// `verify` runs discovery.
    pub fn build(self) -> Result<Verifier, BuildError> {
        check_issuer(&self.issuer)?;
        let audience = self.audience.ok_or(BuildError::NoAudience)?;
        let fetcher = Fetcher::new(
            self.http_timeout,
            concat!("sts-verifier/", env!("CARGO_PKG_VERSION")),
        )?;
        // The broker's keys do not move: discovery runs once. A refresh is the caller's to
        // wait for, falling back to the stale keys when it fails.
        let policy = CachePolicy {
            cooldown: self.refetch_cooldown,
            default_ttl: self.default_cache_ttl,
            deadline: self.http_timeout,
            refresh: Refresh::Inline,
            discovery: Discovery::Remembered,
        };
        let source = KeySource {
            issuer: self.issuer.clone(),
            jwks_url: None,
            algorithms: self.algorithms.iter().map(|a| a.jose()).collect(),
        };
        Ok(Verifier {
            rules: Rules {
                issuer: self.issuer.clone(),
                audience,
                required_scopes: self.required_scopes,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            },
            algorithms: self.algorithms,
            keys: KeyCache::new(source, fetcher, policy, None),
        })
    }
}

/// The issuer must be https: keys fetched over plain http could be swapped by anyone on the
/// path. Plain http is allowed only to a loopback host (development, tests).
fn check_issuer(issuer: &str) -> Result<(), BuildError> {
    let bad = || BuildError::Issuer(issuer.to_owned());
    let url = Url::parse(issuer).map_err(|_| bad())?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    let plain = url.query().is_none() && url.fragment().is_none() && url.username().is_empty();
    if scheme_ok && plain && !host.is_empty() {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::test_keys::TestKey;

    const ISSUER: &str = "https://sts.example.com";
    const NOW: i64 = 1_750_000_000;

    fn verifier() -> Verifier {
        Verifier::builder(ISSUER)
            .audience("https://deploy.internal")
            .required_scopes(["deploy:write"])
            .build()
            .unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "sub": "fake:acme/api", "aud": "https://deploy.internal",
            "exp": NOW + 600, "iat": NOW, "nbf": NOW, "jti": "j-1",
            "scope": "deploy:write artifacts:read", "client_id": "api-deploy",
        })
    }

    /// Runs the offline part of `verify` against `keys` at `NOW`.
    fn check(verifier: &Verifier, token: &str, keys: &[&TestKey]) -> Result<Claims, VerifyError> {
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        let keys = KeySet::from_jwks(&jwks, &Algorithm::ALL.map(Algorithm::jose)).unwrap();
        verifier.check(jws::decode(token, &verifier.algorithms)?, &keys, NOW)
    }

    fn invalid(result: Result<Claims, VerifyError>) -> InvalidToken {
        match result {
            Err(VerifyError::InvalidToken(e)) => e,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn each_algorithm_verifies_and_refuses_tampering() {
        let v = verifier();
        for alg in Algorithm::ALL {
            let key = TestKey::generate(alg);
            let token = key.token(&claims());
            let c = check(&v, &token, &[&key]).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(c.sub, "fake:acme/api", "{alg}");

            // Another payload under the original signature.
            let (header, rest) = token.split_once('.').unwrap();
            let (_, signature) = rest.split_once('.').unwrap();
            let forged = key.token(&json!({"sub": "admin"}));
            let forged_payload = forged.split('.').nth(1).unwrap();
            let swapped = format!("{header}.{forged_payload}.{signature}");
            assert_eq!(
                invalid(check(&v, &swapped, &[&key])),
                InvalidToken::Signature,
                "{alg}"
            );

            // One flipped signature character.
            let mut bytes = token.into_bytes();
            let i = bytes.len() - 10;
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(bytes).unwrap();
            assert_eq!(
                invalid(check(&v, &flipped, &[&key])),
                InvalidToken::Signature,
                "{alg}"
            );
        }
    }

    #[test]
    fn a_key_that_did_not_sign_does_not_verify() {
        let v = verifier();
        let (signer, published) = (
            TestKey::generate(Algorithm::ES256),
            TestKey::generate(Algorithm::ES256),
        );
        let header = json!({"alg": "ES256", "kid": published.kid, "typ": "at+jwt"});
        let token = signer.token_with_header(&header, &claims());
        assert_eq!(
            invalid(check(&v, &token, &[&published])),
            InvalidToken::Signature
        );
        let token = signer.token(&claims());
        assert_eq!(
            invalid(check(&v, &token, &[&published])),
            InvalidToken::UnknownKey
        );
    }

    #[test]
    fn the_header_alg_must_be_the_keys() {
        let v = verifier();
        let (es, ed) = (
            TestKey::generate(Algorithm::ES256),
            TestKey::generate(Algorithm::EdDSA),
        );
        // An EdDSA signature presented under the ES256 key's kid.
        let header = json!({"alg": "EdDSA", "kid": es.kid, "typ": "at+jwt"});
        let token = ed.token_with_header(&header, &claims());
        assert_eq!(
            invalid(check(&v, &token, &[&es, &ed])),
            InvalidToken::KeyMismatch
        );

        let pinned = Verifier::builder(ISSUER)
            .audience("https://deploy.internal")
            .algorithms([Algorithm::ES256])
            .build()
            .unwrap();
        assert_eq!(
            invalid(check(&pinned, &ed.token(&claims()), &[&ed])),
            InvalidToken::Algorithm
        );
        assert!(check(&pinned, &es.token(&claims()), &[&es]).is_ok());
    }

    #[test]
    fn wrong_type_issuer_audience_and_expiry_are_refused() {
        let v = verifier();
        let key = TestKey::generate(Algorithm::ES256);
        let with = |changes: Value| {
            let mut c = claims();
            for (k, v) in changes.as_object().unwrap() {
                c[k] = v.clone();
            }
            key.token(&c)
        };
        let id_token_header = json!({"alg": "ES256", "kid": key.kid, "typ": "JWT"});
        let rows = [
            (
                key.token_with_header(&id_token_header, &claims()),
                InvalidToken::WrongType,
            ),
            (
                with(json!({"iss": "https://evil.example.com"})),
                InvalidToken::Issuer,
            ),
            (
                with(json!({"aud": "https://logs.internal"})),
                InvalidToken::Audience,
            ),
            (with(json!({"exp": NOW - 61})), InvalidToken::Expired),
        ];
        for (token, expected) in rows {
            assert_eq!(invalid(check(&v, &token, &[&key])), expected);
        }
        let err = check(&v, &with(json!({"scope": "artifacts:read"})), &[&key]).unwrap_err();
        assert!(
            matches!(err, VerifyError::InsufficientScope { .. }),
            "{err}"
        );
        assert_eq!(
            (err.status(), err.error_code()),
            (403, "insufficient_scope")
        );
    }

    #[test]
    fn settings_are_checked_when_built() {
        let build = |issuer: &str| Verifier::builder(issuer).audience("a").build().map(|_| ());
        for ok in [
            "https://sts.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:8080",
        ] {
            assert!(build(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://sts.example.com",
            "ftp://sts.example.com",
            "https://sts.example.com?x=1",
            "https://u@sts.example.com",
            "sts.example.com",
            "http://127.0.0.1.evil.com",
        ] {
            assert!(matches!(build(bad), Err(BuildError::Issuer(_))), "{bad}");
        }
        let no_audience = Verifier::builder("https://sts.example.com").build();
        assert!(matches!(no_audience, Err(BuildError::NoAudience)));
    }
}
