//! Published keys, read through jsonwebtoken's [`Jwk`] and parsed once into aws-lc-rs keys.
//!
//! A JWK becomes one key per allowed algorithm it can serve: its `kty`/`crv` must fit the
//! algorithm, and its own `alg` and `use`, when present, must agree. So a token never picks
//! how its key is interpreted, and the hot path never parses a key.

use aws_lc_rs::signature::ParsedPublicKey;
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::signature;
use serde::Deserialize;
use serde_json::Value;

use crate::b64::b64url_decode;
use crate::{alg, der};

/// A JWKS with more keys than this is refused (no issuer publishes hundreds).
pub const MAX_KEYS: usize = 64;
/// RSA keys shorter than this are refused (RFC 8725 §3.5, NIST).
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// One key, parsed, for one algorithm.
pub struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: ParsedPublicKey,
}

impl VerifyKey {
    /// The key `jwk` is for `alg`, if it can serve it; `None` otherwise (another type or
    /// curve, its own `alg` or `use` says otherwise, a weak or malformed key, HMAC).
    pub fn from_jwk(jwk: &Jwk, alg: Algorithm) -> Option<Self> {
        let verification = alg::verification(alg)?;
        let common = &jwk.common;
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        if common.key_algorithm.is_some_and(|k| !names(k, alg)) {
            return None;
        }
        let public = match (&jwk.algorithm, alg) {
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256 | Algorithm::ES384) => {
                let (curve, len) = match alg {
                    Algorithm::ES256 => (EllipticCurve::P256, 32),
                    _ => (EllipticCurve::P384, 48),
                };
                let (x, y) = (b64url_decode(&p.x)?, b64url_decode(&p.y)?);
                if p.curve != curve || x.len() != len || y.len() != len {
                    return None;
                }
                [&[0x04][..], &x, &y].concat()
            }
            (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
                let x = b64url_decode(&p.x)?;
                if p.curve != EllipticCurve::Ed25519 || x.len() != 32 {
                    return None;
                }
                x
            }
            (AlgorithmParameters::RSA(p), _) if alg.family() == alg::AlgorithmFamily::Rsa => {
                let (n, e) = (b64url_decode(&p.n)?, b64url_decode(&p.e)?);
                let bits = der::significant_bits(&n);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || e.is_empty() || e.len() > 8 {
                    return None;
                }
                der::rsa_public_key(&n, &e)
            }
            _ => return None,
        };
        Some(Self {
            kid: common.key_id.clone(),
            alg,
            key: ParsedPublicKey::new(verification, public).ok()?,
        })
    }

    /// The JWK's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm it verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Does `signature` over `message` verify?
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// jsonwebtoken's verifier interface, served by the key parsed once.
impl signature::Verifier<Vec<u8>> for VerifyKey {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        self.key
            .verify_sig(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for VerifyKey {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({:?}, {})", self.kid, alg::name(self.alg))
    }
}

/// Does a JWK's `alg` name `alg`?
fn names(key_alg: KeyAlgorithm, alg: Algorithm) -> bool {
    let name = match key_alg {
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::EdDSA => "EdDSA",
        _ => return false,
    };
    name == alg::name(alg)
}

/// Why a document is not a usable key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not an object with a `keys` array.
    #[error("the JWKS has no keys array")]
    NotAJwks,
    /// More than [`MAX_KEYS`] entries.
    #[error("the JWKS has more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// Nothing in it verifies any allowed algorithm.
    #[error("the JWKS has no usable signing key")]
    NoUsableKey,
}

/// The usable keys of one JWKS document.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    /// JWKs that gave at least one key (for the no-`kid` rule).
    signing_jwks: usize,
    /// `kid`s that more than one entry publishes.
    duplicate_kids: Vec<String>,
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// This key.
    Found(&'a VerifyKey),
    /// No key has this `kid` (or, without one, none serves the algorithm).
    UnknownKid,
    /// Keys have this `kid`, none for this algorithm.
    WrongAlgorithm,
    /// No `kid`, and several keys could apply: guessing would let the token choose.
    Ambiguous,
    /// The JWKS publishes this `kid` more than once: which key it names is ambiguous, so
    /// it names none (not first-wins, which an attacker who can add one entry would love).
    DuplicateKid,
}

impl KeySet {
    /// Reads a JWKS document, keeping keys for `allowed` algorithms. Entries that cannot be
    /// used (encryption keys, other types, unparsable ones) are skipped; a set with no usable
    /// key is an error, so an empty set is never cached.
    pub fn from_jwks(doc: &Value, allowed: &[Algorithm]) -> Result<Self, JwksError> {
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAJwks)?;
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys = Vec::new();
        let mut signing_jwks = 0;
        let mut kids: Vec<&str> = Vec::new();
        let mut duplicate_kids = Vec::new();
        for entry in entries {
            if let Some(kid) = entry.get("kid").and_then(Value::as_str) {
                if kids.contains(&kid) && !duplicate_kids.iter().any(|d| d == kid) {
                    duplicate_kids.push(kid.to_owned());
                }
                kids.push(kid);
            }
            let Ok(jwk) = Jwk::deserialize(entry) else {
                continue;
            };
            let before = keys.len();
            keys.extend(allowed.iter().filter_map(|&a| VerifyKey::from_jwk(&jwk, a)));
            signing_jwks += usize::from(keys.len() > before);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self {
            keys,
            signing_jwks,
            duplicate_kids,
        })
    }

    /// The key for a token's `alg` and `kid`. Without a `kid`, only a set with exactly one
    /// signing JWK is trusted to mean that key.
    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Lookup<'_> {
        match kid {
            Some(kid) if self.duplicate_kids.iter().any(|d| d == kid) => Lookup::DuplicateKid,
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Lookup::UnknownKid;
                }
                named
                    .find(|k| k.alg == alg)
                    .map_or(Lookup::WrongAlgorithm, Lookup::Found)
            }
            None if self.signing_jwks > 1 => Lookup::Ambiguous,
            None => match self.keys.iter().find(|k| k.alg == alg) {
                Some(k) => Lookup::Found(k),
                None => Lookup::UnknownKid,
            },
        }
    }

    /// Is there a key for this `alg` and `kid`?
    pub fn has(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        matches!(self.find(alg, kid), Lookup::Found(_))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sign::SigningKey;

    const ALL: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

    fn jwk_of(key: &SigningKey) -> Value {
        serde_json::to_value(key.jwk()).unwrap()
    }

    fn parse(jwk: &Value, alg: Algorithm) -> Option<VerifyKey> {
        VerifyKey::from_jwk(&Jwk::deserialize(jwk).ok()?, alg)
    }

    #[test]
    fn each_algorithm_parses_and_verifies() {
        for alg in ALL {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let set = KeySet::from_jwks(&json!({"keys": [jwk_of(&key)]}), &ALL).unwrap();
            let Lookup::Found(found) = set.find(alg, Some(key.kid())) else {
                panic!("{alg:?} key not found");
            };
            let signature = key.sign(b"message").unwrap();
            assert!(found.verify(b"message", &signature), "{alg:?}");
            assert!(!found.verify(b"massage", &signature), "{alg:?}");
            let via_trait: &dyn JwtVerifier = found;
            assert!(via_trait.verify(b"message", &signature).is_ok());
            assert_eq!(via_trait.algorithm(), alg);
        }
    }

    #[test]
    fn a_jwk_serves_only_what_its_type_and_own_alg_allow() {
        let (es, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let with = |changes: Value, alg: Algorithm| {
            let mut jwk = jwk_of(&es);
            for (k, v) in changes.as_object().unwrap() {
                if v.is_null() {
                    jwk.as_object_mut().unwrap().remove(k);
                } else {
                    jwk[k] = v.clone();
                }
            }
            parse(&jwk, alg).is_some()
        };
        assert!(with(json!({}), Algorithm::ES256));
        assert!(with(
            json!({"alg": null, "use": null, "kid": null}),
            Algorithm::ES256
        ));
        assert!(!with(json!({}), Algorithm::ES384), "its alg says ES256");
        assert!(
            !with(json!({"alg": null}), Algorithm::ES384),
            "P-256 is not ES384"
        );
        assert!(
            !with(json!({"alg": "RS256"}), Algorithm::ES256),
            "alg disagrees"
        );
        assert!(!with(json!({"alg": "ES384"}), Algorithm::ES256));
        assert!(!with(json!({"alg": "RSA-OAEP"}), Algorithm::ES256));
        assert!(
            !with(json!({"crv": "P-384"}), Algorithm::ES256),
            "other curve"
        );
        assert!(
            !with(json!({"use": "enc"}), Algorithm::ES256),
            "encryption key"
        );
        assert!(
            !with(json!({"x": "AAAA"}), Algorithm::ES256),
            "short coordinate"
        );
        assert!(!with(json!({}), Algorithm::RS256));
        let hmac = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        assert!(parse(&hmac, Algorithm::HS256).is_none());
        assert!(parse(&hmac, Algorithm::RS256).is_none());
    }

    #[test]
    fn an_rsa_jwk_serves_each_allowed_rsa_algorithm_of_sufficient_size() {
        let (rsa, _) = SigningKey::generate(Algorithm::RS256).unwrap();
        let mut jwk = jwk_of(&rsa);
        jwk.as_object_mut().unwrap().remove("alg");
        for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
            assert!(parse(&jwk, alg).is_some(), "{alg:?}");
        }
        let n = b64url_decode(jwk["n"].as_str().unwrap()).unwrap();
        jwk["n"] = json!(crate::b64url(&n[..128]));
        assert!(parse(&jwk, Algorithm::RS256).is_none(), "1024 bits");
    }

    #[test]
    fn lookups() {
        let (es, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let (ed, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let one = KeySet::from_jwks(
            &json!({"keys": [jwk_of(&es), {"kty": "oct", "k": "eA"}]}),
            &ALL,
        )
        .unwrap();
        assert!(one.has(Algorithm::ES256, Some(es.kid())));
        assert!(
            one.has(Algorithm::ES256, None),
            "one signing key: no kid needed"
        );
        assert!(matches!(
            one.find(Algorithm::EdDSA, Some(es.kid())),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            one.find(Algorithm::ES256, Some("other")),
            Lookup::UnknownKid
        ));
        let two = KeySet::from_jwks(&json!({"keys": [jwk_of(&es), jwk_of(&ed)]}), &ALL).unwrap();
        assert!(matches!(
            two.find(Algorithm::ES256, None),
            Lookup::Ambiguous
        ));
        assert!(two.has(Algorithm::EdDSA, Some(ed.kid())));
    }

    #[test]
    fn a_kid_published_twice_names_no_key() {
        let (a, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let (b, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let mut impostor = jwk_of(&b);
        impostor["kid"] = json!(a.kid());
        for keys in [
            json!([jwk_of(&a), impostor.clone(), jwk_of(&b)]),
            json!([impostor.clone(), jwk_of(&a), jwk_of(&b)]),
            json!([jwk_of(&a), jwk_of(&a), jwk_of(&b)]),
            // Even when the second entry is not a key this code can use.
            json!([jwk_of(&a), {"kty": "oct", "kid": a.kid(), "k": "eA"}, jwk_of(&b)]),
        ] {
            let set = KeySet::from_jwks(&json!({ "keys": keys }), &ALL).unwrap();
            assert!(matches!(
                set.find(Algorithm::ES256, Some(a.kid())),
                Lookup::DuplicateKid
            ));
            assert!(
                set.has(Algorithm::ES256, Some(b.kid())),
                "other kids still serve"
            );
        }
    }

    #[test]
    fn unusable_documents_are_errors() {
        let (ed, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let rows = [
            (json!({}), JwksError::NotAJwks),
            (json!([1, 2]), JwksError::NotAJwks),
            (json!({"keys": "nope"}), JwksError::NotAJwks),
            (json!({"keys": []}), JwksError::NoUsableKey),
            (
                json!({"keys": [{"kty": "oct", "k": "eA"}, 5, "x"]}),
                JwksError::NoUsableKey,
            ),
            (
                json!({"keys": vec![jwk_of(&ed); MAX_KEYS + 1]}),
                JwksError::TooManyKeys,
            ),
        ];
        for (doc, expected) in rows {
            assert_eq!(
                KeySet::from_jwks(&doc, &ALL).unwrap_err(),
                expected,
                "{doc}"
            );
        }
        let only_es = [Algorithm::ES256];
        assert_eq!(
            KeySet::from_jwks(&json!({"keys": [jwk_of(&ed)]}), &only_es).unwrap_err(),
            JwksError::NoUsableKey,
            "keys for algorithms not allowed are not kept"
        );
    }
}
