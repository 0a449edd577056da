//! Splitting and decoding a compact JWS without trusting any of it yet.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Tokens larger than this are refused before any decoding (SPEC: 16 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A compact JWS, decoded but not verified.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload's claims.
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Why a token could not even be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("subject token is larger than 16 KiB")]
    TooLarge,
    /// Five segments: an encrypted token.
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// Not three base64url segments of JSON objects.
    #[error("subject token is not a well-formed JWT")]
    Malformed,
    /// A key appears twice in the header or payload (parsers disagree on which wins).
    #[error("subject token has a duplicate JSON member")]
    DuplicateKey,
}

/// Decodes `token` into header, claims and signature.
pub fn decode(token: &str) -> Result<UnverifiedJws<'_>, DecodeError> {
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
    let header = json_object(h)?;
    let claims = json_object(p)?;
    let signature = crate::jose::b64url_decode(s).ok_or(DecodeError::Malformed)?;
    Ok(UnverifiedJws {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

fn json_object(segment: &str) -> Result<Map<String, Value>, DecodeError> {
    let bytes = crate::jose::b64url_decode(segment).ok_or(DecodeError::Malformed)?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let map = match de.deserialize_map(UniqueMapVisitor) {
        Ok(m) => m,
        Err(e) if e.to_string().starts_with(DUPLICATE) => return Err(DecodeError::DuplicateKey),
        Err(_) => return Err(DecodeError::Malformed),
    };
    de.end().map_err(|_| DecodeError::Malformed)?;
    Ok(map)
}

const DUPLICATE: &str = "duplicate member";

/// A JSON object whose top-level keys must be unique: RFC 7515 §5.2 says reject, and a
/// validator and a consumer that pick different duplicates disagree on what was verified.
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
    use crate::jose::b64url;

    fn token(h: &str, p: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url(h.as_bytes()),
            b64url(p.as_bytes()),
            b64url(b"sig")
        )
    }

    #[test]
    fn decodes_and_refuses() {
        let t = token(r#"{"alg":"RS256"}"#, r#"{"sub":"x"}"#);
        let jws = decode(&t).unwrap();
        assert_eq!(jws.claims["sub"], "x");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(
            decode(&token(r#"{"alg":"RS256","alg":"none"}"#, "{}")).unwrap_err(),
            DecodeError::DuplicateKey
        );
        assert_eq!(
            decode(&token("{}", r#"{"sub":"a","sub":"b"}"#)).unwrap_err(),
            DecodeError::DuplicateKey
        );
        assert_eq!(
            decode(&token("[]", "{}")).unwrap_err(),
            DecodeError::Malformed
        );
        assert_eq!(
            decode(&token("{}", "{} x")).unwrap_err(),
            DecodeError::Malformed
        );
        assert_eq!(decode("a.b.c.d.e").unwrap_err(), DecodeError::Encrypted);
        assert_eq!(decode("a.b").unwrap_err(), DecodeError::Malformed);
        assert_eq!(
            decode(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(),
            DecodeError::TooLarge
        );
        assert_eq!(decode("e30=.e30.c2ln").unwrap_err(), DecodeError::Malformed);
    }
}
