//! The broker's published keys, parsed once into aws-lc-rs public keys.
//!
//! A JWK becomes a key for exactly one algorithm: its `alg` when it names one, and that `alg`
//! must agree with its `kty`/`crv`, so a token can never pick how its key is interpreted.

use aws_lc_rs::signature::ParsedPublicKey;
use serde_json::Value;

use crate::Algorithm;
use crate::jws::b64url_decode;

/// A JWKS with more keys than this is refused (the broker publishes two or three).
const MAX_KEYS: usize = 64;

/// One parsed key.
pub(crate) struct VerifyKey {
    kid: String,
    alg: Algorithm,
    key: ParsedPublicKey,
}

impl VerifyKey {
    /// Does `signature` over `message` verify with this key?
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({}, {})", self.kid, self.alg)
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug)]
pub(crate) struct KeySet {
    keys: Vec<VerifyKey>,
}

/// The result of looking up a token's `kid` and `alg`.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// This key.
    Found(&'a VerifyKey),
    /// A key has the `kid` but serves another algorithm.
    WrongAlgorithm,
    /// No key has the `kid`.
    Unknown,
}

impl KeySet {
    /// Parses a JWKS. JWKs this crate cannot use (encryption keys, other types, no `kid`) are
    /// skipped; a set with no usable key is an error, so an empty set is never cached.
    pub fn from_jwks(jwks: &Value) -> Result<Self, String> {
        let list = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no keys array")?;
        if list.len() > MAX_KEYS {
            return Err(format!("the JWKS has more than {MAX_KEYS} keys"));
        }
        let keys: Vec<VerifyKey> = list.iter().filter_map(parse_jwk).collect();
        if keys.is_empty() {
            return Err("the JWKS has no usable signing key".into());
        }
        Ok(Self { keys })
    }

    /// The key for a token's `kid`, if it serves `alg`.
    pub fn find(&self, kid: &str, alg: Algorithm) -> Lookup<'_> {
        let mut with_kid = self.keys.iter().filter(|k| k.kid == kid).peekable();
        if with_kid.peek().is_none() {
            return Lookup::Unknown;
        }
        with_kid
            .find(|k| k.alg == alg)
            .map_or(Lookup::WrongAlgorithm, Lookup::Found)
    }

    /// Does any key have this `kid`?
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }
}

fn parse_jwk(jwk: &Value) -> Option<VerifyKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| text(name).and_then(b64url_decode);
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    let alg = algorithm_of(jwk)?;
    let public = match alg {
        Algorithm::ES256 => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            [&[0x04][..], &x, &y].concat()
        }
        Algorithm::EdDSA => bytes("x").filter(|x| x.len() == 32)?,
        // aws-lc-rs refuses moduli outside 2048..=8192 bits (RFC 8725 §3.5) when parsing.
        Algorithm::RS256 => rsa_public_key_der(&bytes("n")?, &bytes("e")?),
    };
    let key = ParsedPublicKey::new(alg.verification(), public).ok()?;
    Some(VerifyKey {
        kid: text("kid").filter(|k| !k.is_empty())?.to_owned(),
        alg,
        key,
    })
}

/// The one algorithm a JWK serves: implied by `kty`/`crv`, and equal to its `alg` if set.
fn algorithm_of(jwk: &Value) -> Option<Algorithm> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let implied = match (text("kty")?, text("crv")) {
        ("EC", Some("P-256")) => Algorithm::ES256,
        ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
        ("RSA", _) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.get("alg") {
        None => Some(implied),
        Some(alg) => alg
            .as_str()
            .and_then(Algorithm::parse)
            .filter(|&a| a == implied),
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017),
/// the form aws-lc-rs parses.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let body = [der_integer(n), der_integer(e)].concat();
    [vec![0x30], der_length(body.len()), body].concat()
}

/// A positive DER INTEGER: leading zeros trimmed, one added back when the high bit is set.
fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let trimmed = &bytes[zeros.min(bytes.len().saturating_sub(1))..];
    let pad = trimmed.first().is_some_and(|&b| b & 0x80 != 0);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if pad {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    [vec![0x02], der_length(content.len()), content].concat()
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    [
        vec![0x80 | (bytes.len() - skip) as u8],
        bytes[skip..].to_vec(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_keys::TestKey;

    #[test]
    fn der_encoding() {
        assert_eq!(
            der_integer(&[0x01, 0x00, 0x01]),
            [0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(der_integer(&[0x00, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_integer(&[0x00, 0x00]), [0x02, 0x01, 0x00]);
        assert_eq!(der_length(300), [0x82, 0x01, 0x2c]);
    }

    #[test]
    fn each_algorithm_parses_and_verifies() {
        for alg in Algorithm::ALL {
            let key = TestKey::generate(alg);
            let set = KeySet::from_jwks(&json!({"keys": [key.jwk()]})).unwrap();
            let Lookup::Found(found) = set.find(&key.kid, alg) else {
                panic!("{alg} key not found");
            };
            let signature = key.sign(b"message");
            assert!(found.verify(b"message", &signature), "{alg}");
            assert!(!found.verify(b"massage", &signature), "{alg}");
        }
    }

    #[test]
    fn a_jwk_serves_only_the_algorithm_its_type_implies() {
        let es = TestKey::generate(Algorithm::ES256);
        let with = |changes: Value| {
            let mut jwk = es.jwk();
            for (k, v) in changes.as_object().unwrap() {
                if v.is_null() {
                    jwk.as_object_mut().unwrap().remove(k);
                } else {
                    jwk[k] = v.clone();
                }
            }
            parse_jwk(&jwk).map(|k| k.alg)
        };
        assert_eq!(with(json!({})), Some(Algorithm::ES256));
        assert_eq!(
            with(json!({"alg": null})),
            Some(Algorithm::ES256),
            "alg implied"
        );
        assert_eq!(
            with(json!({"alg": "RS256"})),
            None,
            "alg disagrees with kty"
        );
        assert_eq!(with(json!({"alg": "ES384"})), None, "unknown alg");
        assert_eq!(with(json!({"crv": "P-384"})), None, "other curve");
        assert_eq!(with(json!({"kty": "OKP", "crv": "Ed25519"})), None);
        assert_eq!(with(json!({"use": "enc"})), None, "encryption key");
        assert_eq!(with(json!({"kid": null})), None, "no kid");
        assert_eq!(with(json!({"x": "AAAA"})), None, "short coordinate");
        let hmac = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        assert!(parse_jwk(&hmac).is_none());
    }

    #[test]
    fn lookup_tells_unknown_kid_from_wrong_algorithm() {
        let es = TestKey::generate(Algorithm::ES256);
        let set =
            KeySet::from_jwks(&json!({"keys": [es.jwk(), {"kty": "oct", "k": "eA"}]})).unwrap();
        assert!(matches!(
            set.find(&es.kid, Algorithm::ES256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(&es.kid, Algorithm::EdDSA),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.find("other", Algorithm::ES256),
            Lookup::Unknown
        ));
        assert!(set.has_kid(&es.kid) && !set.has_kid("other"));
    }

    #[test]
    fn unusable_documents_are_errors() {
        assert!(KeySet::from_jwks(&json!({})).is_err());
        assert!(KeySet::from_jwks(&json!({"keys": []})).is_err());
        assert!(KeySet::from_jwks(&json!({"keys": [{"kty": "oct", "k": "eA"}]})).is_err());
        let many = vec![TestKey::generate(Algorithm::EdDSA).jwk(); MAX_KEYS + 1];
        assert!(KeySet::from_jwks(&json!({ "keys": many })).is_err());
    }
}
