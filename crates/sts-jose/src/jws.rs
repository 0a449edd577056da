//! Splitting and decoding a compact JWS without trusting any of it yet.

use serde_json::{Map, Value};

use crate::b64::b64url_decode;
use crate::json::{self, JsonError};

/// Tokens larger than this are refused before any decoding: the tokens this code sees are
/// a few KiB at most, and a cap keeps hostile input from costing memory or time.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A compact JWS, decoded but not verified.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The protected header, every member (unique).
    pub header: Map<String, Value>,
    /// The payload's claims (members unique at every depth).
    pub claims: Map<String, Value>,
    /// The payload's JSON text, as the token carries it (the claims were parsed from it).
    pub payload: String,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Why a token could not even be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("the token is larger than 16 KiB")]
    TooLarge,
    /// Five segments: an encrypted token (JWE).
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// Not three base64url segments, header and payload JSON objects.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// A member appears twice in the header or payload.
    #[error("the token has a duplicate JSON member")]
    DuplicateKey,
}

/// Decodes `token` into header, claims and signature.
pub fn decode(token: &str) -> Result<Jws<'_>, DecodeError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(DecodeError::Malformed);
    };
    match parts.count() {
        0 => {}
        2 => return Err(DecodeError::Encrypted),
        _ => return Err(DecodeError::Malformed),
    }
    let (header, _) = object(h)?;
    let (claims, payload) = object(p)?;
    let signature = b64url_decode(s).ok_or(DecodeError::Malformed)?;
    Ok(Jws {
        header,
        claims,
        payload,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// A segment's JSON object, and its text.
fn object(segment: &str) -> Result<(Map<String, Value>, String), DecodeError> {
    let bytes = b64url_decode(segment).ok_or(DecodeError::Malformed)?;
    let object = json::object(&bytes).map_err(|e| match e {
        JsonError::Duplicate => DecodeError::DuplicateKey,
        JsonError::Invalid => DecodeError::Malformed,
    })?;
    // It parsed as JSON, so it is UTF-8.
    let text = String::from_utf8(bytes).map_err(|_| DecodeError::Malformed)?;
    Ok((object, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64::b64url;

    fn token(h: &str, p: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url(h.as_bytes()),
            b64url(p.as_bytes()),
            b64url(b"sig")
        )
    }

    #[test]
    fn decodes_a_well_formed_token() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"sub":"x"}"#);
        let jws = decode(&t).unwrap();
        assert_eq!(jws.header["alg"], "RS256");
        assert_eq!(jws.claims["sub"], "x");
        assert_eq!(jws.payload, r#"{"sub":"x"}"#);
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn refuses_what_is_not_one_compact_jws() {
        let ok = token("{}", "{}");
        let rows: Vec<(&str, String, DecodeError)> = vec![
            ("two parts", "a.b".into(), DecodeError::Malformed),
            ("four parts", format!("{ok}.x"), DecodeError::Malformed),
            ("five parts", "a.b.c.d.e".into(), DecodeError::Encrypted),
            ("six parts", "a.b.c.d.e.f".into(), DecodeError::Malformed),
            ("padding", format!("{ok}="), DecodeError::Malformed),
            (
                "padded header",
                "e30=.e30.c2ln".into(),
                DecodeError::Malformed,
            ),
            (
                "not base64url",
                "e30+.e30.c2ln".into(),
                DecodeError::Malformed,
            ),
            ("header an array", token("[]", "{}"), DecodeError::Malformed),
            ("trailing data", token("{}", "{} x"), DecodeError::Malformed),
            (
                "duplicate in header",
                token(r#"{"alg":"RS256","alg":"none"}"#, "{}"),
                DecodeError::DuplicateKey,
            ),
            (
                "duplicate in payload",
                token("{}", r#"{"sub":"a","sub":"b"}"#),
                DecodeError::DuplicateKey,
            ),
            (
                "nested duplicate in payload",
                token("{}", r#"{"k8s":{"ns":"a","ns":"b"}}"#),
                DecodeError::DuplicateKey,
            ),
            (
                "too large",
                "a".repeat(MAX_TOKEN_BYTES + 1),
                DecodeError::TooLarge,
            ),
        ];
        for (name, t, expected) in rows {
            assert_eq!(decode(&t).unwrap_err(), expected, "{name}");
        }
    }
}
