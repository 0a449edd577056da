//! The header rules every verification applies before a key is looked at, read into
//! jsonwebtoken's [`Header`].
//!
//! Key hints in the header (`jku`, `x5u`, `jwk`, `x5c`) are never used: keys come only
//! from the JWKS the caller registered. The header cannot choose its own key.

use jsonwebtoken::{Algorithm, Header};
use serde::Deserialize;
use serde::de::value::MapDeserializer;
use serde_json::{Map, Value};

use crate::alg;

/// The longest `kid` accepted (real issuers use a thumbprint or a short id).
pub const MAX_KID_BYTES: usize = 256;

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// No `alg` member.
    #[error("no alg")]
    NoAlg,
    /// `alg` is `none`, HMAC, unknown, or not among those allowed.
    #[error("the algorithm is not accepted")]
    Algorithm,
    /// A `crit` member: RFC 7515 §4.1.11 says a token with critical extensions this code
    /// does not implement is invalid, and it implements none.
    #[error("crit extensions are not supported")]
    Critical,
    /// `enc` or `zip`: an encrypted or compressed token dressed as a JWS.
    #[error("encrypted or compressed tokens are not accepted")]
    Encrypted,
    /// `cty: JWT`: a nested token, whose inner claims were never signed by this key.
    #[error("nested tokens are not accepted")]
    Nested,
    /// `kid` present but not a non-empty string of at most [`MAX_KID_BYTES`].
    #[error("kid must be a short string")]
    Kid,
    /// A registered member of the wrong type.
    #[error("the header is malformed")]
    Malformed,
}

/// Checks `header` and returns it typed. `alg` must be one of `allowed` (and asymmetric,
/// whatever `allowed` says).
pub fn check(header: &Map<String, Value>, allowed: &[Algorithm]) -> Result<Header, HeaderError> {
    let alg = header.get("alg").ok_or(HeaderError::NoAlg)?;
    let alg = alg
        .as_str()
        .and_then(alg::parse)
        .filter(|a| allowed.contains(a))
        .ok_or(HeaderError::Algorithm)?;
    if header.contains_key("crit") {
        return Err(HeaderError::Critical);
    }
    if header.contains_key("enc") || header.contains_key("zip") {
        return Err(HeaderError::Encrypted);
    }
    if let Some(cty) = header.get("cty") {
        // RFC 7519 §5.2: "JWT" (any case) means nested; a cty that is not a string is
        // refused the same way rather than guessed at.
        if cty.as_str().is_none_or(|c| c.eq_ignore_ascii_case("JWT")) {
            return Err(HeaderError::Nested);
        }
    }
    match header.get("kid") {
        None => {}
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => {}
        Some(_) => return Err(HeaderError::Kid),
    }
    let typed = Header::deserialize(MapDeserializer::<_, serde_json::Error>::new(
        header.iter().map(|(k, v)| (k.as_str(), v)),
    ))
    .map_err(|_| HeaderError::Malformed)?;
    debug_assert_eq!(typed.alg, alg);
    Ok(typed)
}

/// RFC 9068 §4: an access token's header says `typ` `at+jwt` (a media type: compared without
/// regard to case, with or without `application/`). A JWT of another type signed with the
/// same keys (an ID token) must not pass as an access token (RFC 8725 §3.11).
pub fn is_access_token(header: &Map<String, Value>) -> bool {
    header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|typ| {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_json(v: Value, allowed: &[Algorithm]) -> Result<Header, HeaderError> {
        check(v.as_object().unwrap(), allowed)
    }

    #[test]
    fn access_token_type() {
        let typed =
            |typ: Value| is_access_token(json!({"alg": "ES256", "typ": typ}).as_object().unwrap());
        assert!(typed(json!("at+jwt")));
        assert!(typed(json!("AT+JWT")));
        assert!(typed(json!("application/at+jwt")));
        assert!(!typed(json!("JWT")));
        assert!(!typed(json!("at+jwt ")));
        assert!(!typed(json!(["at+jwt"])));
        assert!(!is_access_token(
            json!({"alg": "ES256"}).as_object().unwrap()
        ));
    }

    #[test]
    fn header_table() {
        let all = alg::ASYMMETRIC;
        let ok = check_json(
            json!({"alg": "ES256", "kid": "k", "typ": "JWT", "x": [1]}),
            &all,
        )
        .unwrap();
        assert_eq!((ok.alg, ok.kid.as_deref()), (Algorithm::ES256, Some("k")));
        assert!(check_json(json!({"alg": "RS256", "cty": "text/plain"}), &all).is_ok());
        let rows = [
            (json!({"kid": "k"}), HeaderError::NoAlg),
            (json!({"alg": "none"}), HeaderError::Algorithm),
            (json!({"alg": "HS256"}), HeaderError::Algorithm),
            (json!({"alg": 5}), HeaderError::Algorithm),
            (
                json!({"alg": "RS256", "crit": ["exp"]}),
                HeaderError::Critical,
            ),
            (
                json!({"alg": "RS256", "enc": "A128GCM"}),
                HeaderError::Encrypted,
            ),
            (
                json!({"alg": "RS256", "zip": "DEF"}),
                HeaderError::Encrypted,
            ),
            (json!({"alg": "RS256", "cty": "jwt"}), HeaderError::Nested),
            (json!({"alg": "RS256", "cty": 1}), HeaderError::Nested),
            (json!({"alg": "RS256", "kid": 5}), HeaderError::Kid),
            (json!({"alg": "RS256", "kid": ""}), HeaderError::Kid),
            (
                json!({"alg": "RS256", "kid": "x".repeat(257)}),
                HeaderError::Kid,
            ),
            (json!({"alg": "RS256", "jku": 5}), HeaderError::Malformed),
            (
                json!({"alg": "RS256", "typ": ["JWT"]}),
                HeaderError::Malformed,
            ),
        ];
        for (header, expected) in rows {
            assert_eq!(
                check_json(header.clone(), &all).unwrap_err(),
                expected,
                "{header}"
            );
        }
    }

    #[test]
    fn the_allow_list_pins_and_hmac_never_passes() {
        let es = [Algorithm::ES256];
        assert!(check_json(json!({"alg": "ES256"}), &es).is_ok());
        assert_eq!(
            check_json(json!({"alg": "RS256"}), &es).unwrap_err(),
            HeaderError::Algorithm
        );
        let careless = [Algorithm::HS256, Algorithm::ES256];
        assert_eq!(
            check_json(json!({"alg": "HS256"}), &careless).unwrap_err(),
            HeaderError::Algorithm
        );
    }
}
