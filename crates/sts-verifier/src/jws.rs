//! Splitting a compact JWS and applying the header rules, before any key is looked at.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::Algorithm;
use crate::error::InvalidToken;

/// Tokens larger than this are refused before any decoding: broker tokens are well under
/// 2 KiB, and a cap keeps hostile input from costing memory or time.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A compact JWS whose header passed the rules; the signature is not checked yet.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    /// The header's `alg`, already on the allow-list.
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: String,
    /// The payload, unverified.
    pub claims: Map<String, Value>,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Decodes `token` and checks its header against `allowed` algorithms.
pub(crate) fn decode<'a>(token: &'a str, allowed: &[Algorithm]) -> Result<Jws<'a>, InvalidToken> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(InvalidToken::TooLarge);
    }
    // Exactly three segments: five would be an encrypted JWT, which the broker never issues.
    let [h, p, s] = token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| InvalidToken::Malformed)?;
    let header = json_object(h)?;
    let claims = json_object(p)?;
    let signature = b64url_decode(s).ok_or(InvalidToken::Malformed)?;
    let (alg, kid) = check_header(&header, allowed)?;
    Ok(Jws {
        alg,
        kid,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// The header rules of RFC 9068 and RFC 8725, returning the `alg` and `kid`.
fn check_header(
    header: &Map<String, Value>,
    allowed: &[Algorithm],
) -> Result<(Algorithm, String), InvalidToken> {
    let text = |name: &str| header.get(name).and_then(Value::as_str);
    // `typ` keeps an ID token or any other JWT the broker's keys signed from passing as an
    // access token (RFC 9068 §4, RFC 8725 §3.11). Media types compare case-insensitively.
    let typ = text("typ").unwrap_or_default();
    if !(typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")) {
        return Err(InvalidToken::WrongType);
    }
    // RFC 7515 §4.1.11: a `crit` extension we do not implement must make the token invalid.
    if header.contains_key("crit") {
        return Err(InvalidToken::Critical);
    }
    let alg = text("alg")
        .and_then(Algorithm::parse)
        .filter(|a| allowed.contains(a))
        .ok_or(InvalidToken::Algorithm)?;
    // The broker always names its key; without a kid the verifier would have to guess, and a
    // guess lets the token choose. `jku`, `x5u` and `jwk` are ignored: keys come from the
    // broker's JWKS only.
    let kid = text("kid")
        .filter(|k| !k.is_empty())
        .ok_or(InvalidToken::MissingKid)?;
    Ok((alg, kid.to_owned()))
}

/// Base64url without padding; padding, other alphabets and non-canonical trailing bits are
/// refused, so one token has exactly one encoding.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

fn json_object(segment: &str) -> Result<Map<String, Value>, InvalidToken> {
    let bytes = b64url_decode(segment).ok_or(InvalidToken::Malformed)?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let map = de.deserialize_map(UniqueMapVisitor).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            InvalidToken::DuplicateMember
        } else {
            InvalidToken::Malformed
        }
    })?;
    de.end().map_err(|_| InvalidToken::Malformed)?;
    Ok(map)
}

const DUPLICATE: &str = "duplicate member";

/// A JSON object whose members must be unique (RFC 7515 §5.2): parsers that keep different
/// duplicates would disagree on what was verified.
struct UniqueMapVisitor;

impl<'de> Visitor<'de> for UniqueMapVisitor {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::b64url;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes()),
            b64url(b"sig")
        )
    }

    const GOOD: &str = r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#;

    #[test]
    fn decodes_a_well_formed_token() {
        let t = token(GOOD, r#"{"sub":"x"}"#);
        let jws = decode(&t, &Algorithm::ALL).unwrap();
        assert_eq!(jws.alg, Algorithm::ES256);
        assert_eq!(jws.kid, "k1");
        assert_eq!(jws.claims["sub"], "x");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn refuses_malformed_shapes() {
        let ok = token(GOOD, "{}");
        let rows: Vec<(&str, String, InvalidToken)> = vec![
            ("two parts", "a.b".into(), InvalidToken::Malformed),
            ("four parts", format!("{ok}.x"), InvalidToken::Malformed),
            (
                "five parts (JWE)",
                "a.b.c.d.e".into(),
                InvalidToken::Malformed,
            ),
            ("padding", format!("{ok}="), InvalidToken::Malformed),
            (
                "header not an object",
                token("[]", "{}"),
                InvalidToken::Malformed,
            ),
            (
                "trailing data",
                token(GOOD, "{} x"),
                InvalidToken::Malformed,
            ),
            (
                "not base64url",
                "e30+.e30.c2ln".into(),
                InvalidToken::Malformed,
            ),
            (
                "duplicate in header",
                token(
                    r#"{"alg":"ES256","kid":"k","typ":"at+jwt","alg":"none"}"#,
                    "{}",
                ),
                InvalidToken::DuplicateMember,
            ),
            (
                "duplicate in payload",
                token(GOOD, r#"{"sub":"a","sub":"b"}"#),
                InvalidToken::DuplicateMember,
            ),
            (
                "too large",
                "a".repeat(MAX_TOKEN_BYTES + 1),
                InvalidToken::TooLarge,
            ),
        ];
        for (name, t, expected) in rows {
            assert_eq!(decode(&t, &Algorithm::ALL).unwrap_err(), expected, "{name}");
        }
    }

    #[test]
    fn header_rules() {
        let rows = [
            (r#"{"alg":"ES256","kid":"k","typ":"AT+JWT"}"#, None),
            (
                r#"{"alg":"ES256","kid":"k","typ":"application/at+jwt"}"#,
                None,
            ),
            (
                r#"{"alg":"ES256","kid":"k","typ":"JWT"}"#,
                Some(InvalidToken::WrongType),
            ),
            (
                r#"{"alg":"ES256","kid":"k"}"#,
                Some(InvalidToken::WrongType),
            ),
            (
                r#"{"alg":"ES256","kid":"k","typ":"at+jwt","crit":["exp"]}"#,
                Some(InvalidToken::Critical),
            ),
            (
                r#"{"alg":"none","kid":"k","typ":"at+jwt"}"#,
                Some(InvalidToken::Algorithm),
            ),
            (
                r#"{"alg":"HS256","kid":"k","typ":"at+jwt"}"#,
                Some(InvalidToken::Algorithm),
            ),
            (
                r#"{"alg":"es256","kid":"k","typ":"at+jwt"}"#,
                Some(InvalidToken::Algorithm),
            ),
            (
                r#"{"alg":"RS256","kid":"k","typ":"at+jwt"}"#,
                Some(InvalidToken::Algorithm),
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt"}"#,
                Some(InvalidToken::MissingKid),
            ),
            (
                r#"{"alg":"ES256","kid":"","typ":"at+jwt"}"#,
                Some(InvalidToken::MissingKid),
            ),
            (
                r#"{"alg":"ES256","kid":7,"typ":"at+jwt"}"#,
                Some(InvalidToken::MissingKid),
            ),
        ];
        // RS256 is left off the allow-list here to show the list is honoured.
        let allowed = [Algorithm::ES256, Algorithm::EdDSA];
        for (header, expected) in rows {
            let result = decode(&token(header, "{}"), &allowed).map(|_| ());
            assert_eq!(result.err(), expected, "{header}");
        }
    }
}
