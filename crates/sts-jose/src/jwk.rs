//! One published key, read through jsonwebtoken's [`Jwk`] and parsed once into an aws-lc-rs
//! key.
//!
//! A JWK becomes one key per allowed algorithm it can serve: its `kty`/`crv` must fit the
//! algorithm, and its own `alg` and `use`, when present, must agree. So a token never picks
//! how its key is interpreted, and the hot path never parses a key.

use aws_lc_rs::signature::ParsedPublicKey;
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::signature;

use crate::b64::b64url_decode;
use crate::{alg, der};

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

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;
    use crate::jwks::{KeySet, Lookup};
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
}
