//! The broker's access-token header rules (RFC 9068, RFC 8725) over the core's compact JWS
//! decoding, before any key is looked at.

use serde_json::{Map, Value};
use sts_jose::header::{self, HeaderError};
pub use sts_jose::jws::MAX_TOKEN_BYTES;
use sts_jose::jws::{self as compact, DecodeError};

use crate::Algorithm;
use crate::error::InvalidToken;

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
    let jws = compact::decode(token).map_err(|e| match e {
        DecodeError::TooLarge => InvalidToken::TooLarge,
        DecodeError::DuplicateKey => InvalidToken::DuplicateMember,
        // Five segments would be an encrypted JWT, which the broker never issues.
        DecodeError::Encrypted | DecodeError::Malformed => InvalidToken::Malformed,
    })?;
    if !header::is_access_token(&jws.header) {
        return Err(InvalidToken::WrongType);
    }
    let allowed: Vec<sts_jose::Algorithm> = allowed.iter().map(|a| a.jose()).collect();
    let header = header::check(&jws.header, &allowed).map_err(|e| match e {
        HeaderError::NoAlg | HeaderError::Algorithm => InvalidToken::Algorithm,
        HeaderError::Critical => InvalidToken::Critical,
        HeaderError::Kid => InvalidToken::MissingKid,
        HeaderError::Encrypted | HeaderError::Nested | HeaderError::Malformed => {
            InvalidToken::Malformed
        }
    })?;
    // The broker always names its key; without a kid the verifier would have to guess, and a
    // guess lets the token choose.
    let kid = header.kid.ok_or(InvalidToken::MissingKid)?;
    Ok(Jws {
        alg: Algorithm::of(header.alg).ok_or(InvalidToken::Algorithm)?,
        kid,
        claims: jws.claims,
        signing_input: jws.signing_input,
        signature: jws.signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sts_jose::b64url;

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
