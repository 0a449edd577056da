//! Signing keys: generated with aws-lc-rs, held parsed, published as jsonwebtoken [`Jwk`]s.
//!
//! They serve jsonwebtoken's [`JwtSigner`] interface, but tokens are not made with
//! `jsonwebtoken::encode`: that builds its signer from key bytes on every call (and its
//! aws-lc RSA signer parses the private key on every signature), where a key held parsed
//! signs at once. README "Dependencies" has the numbers.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::signature;
use serde::Serialize;

use crate::alg;
use crate::b64::{b64url, b64url_into};

/// Why a key could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
#[error("signing key: {0}")]
pub struct KeyError(pub String);

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key ready to sign, with its public JWK.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    jwk: Jwk,
    pair: Pair,
    /// The public half, parsed once, to verify this key's own tokens.
    verifier: ParsedPublicKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.kid, alg::name(self.alg))
    }
}

/// The algorithms keys can be made for.
pub const SIGNING: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

impl SigningKey {
    /// Generates a key for `alg` (ES256, RS256 with 2048 bits, or EdDSA); returns it and its
    /// PKCS#8 encoding for storage.
    pub fn generate(alg: Algorithm) -> Result<(Self, Vec<u8>), KeyError> {
        let err = |e: &dyn std::fmt::Display| {
            KeyError(format!("cannot generate {}: {e}", alg::name(alg)))
        };
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            Algorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|e| err(&e))?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|e| err(&e))?
                .as_der()
                .map_err(|e| err(&e))?
                .as_ref()
                .to_vec(),
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| err(&e))?
                .as_ref()
                .to_vec(),
            _ => return Err(err(&"not a signing algorithm")),
        };
        Ok((Self::from_pkcs8(alg, &pkcs8)?, pkcs8))
    }

    /// Loads a PKCS#8 key for `alg`.
    pub fn from_pkcs8(alg: Algorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let err = |e: &dyn std::fmt::Display| {
            KeyError(format!("stored {} key is unusable: {e}", alg::name(alg)))
        };
        let (pair, params, verifier) = match alg {
            Algorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|e| err(&e))?;
                let point = pair.public_key().as_ref();
                let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64url(&point[1..33]),
                    y: b64url(&point[33..65]),
                });
                let verifier =
                    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|e| err(&e))?;
                (Pair::Ec(pair), params, verifier)
            }
            Algorithm::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| err(&e))?;
                return Self::from_rsa_pair(pair);
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| err(&e))?;
                let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: b64url(pair.public_key().as_ref()),
                });
                let verifier = ParsedPublicKey::new(&ED25519, pair.public_key().as_ref())
                    .map_err(|e| err(&e))?;
                (Pair::Ed(pair), params, verifier)
            }
            _ => return Err(err(&"not a signing algorithm")),
        };
        Self::assemble(alg, pair, params, verifier)
    }

    fn assemble(
        alg: Algorithm,
        pair: Pair,
        params: AlgorithmParameters,
        verifier: ParsedPublicKey,
    ) -> Result<Self, KeyError> {
        let err = |e: &dyn std::fmt::Display| {
            KeyError(format!("{} key is unusable: {e}", alg::name(alg)))
        };
        let mut jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: params,
        };
        // RFC 7638: the kid is the thumbprint of the required public members.
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| err(&e))?;
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(key_algorithm(alg)),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        Ok(Self {
            kid,
            alg,
            jwk,
            pair,
            verifier,
            rng: SystemRandom::new(),
        })
    }

    /// Loads an RS256 key from PEM: PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out
    /// for an app) or PKCS#8 (`BEGIN PRIVATE KEY`). Errors never quote the key.
    pub fn from_rsa_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_block(pem)?;
        let pair = match label {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            _ => return Err(KeyError("expected an RSA private key in PEM".into())),
        }
        .map_err(|e| KeyError(format!("the RSA private key is unusable: {e}")))?;
        Self::from_rsa_pair(pair)
    }

    fn from_rsa_pair(pair: RsaKeyPair) -> Result<Self, KeyError> {
        let err = |e: &dyn std::fmt::Display| KeyError(format!("RS256 key is unusable: {e}"));
        let public = pair.public_key();
        let params = AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: b64url(public.modulus().big_endian_without_leading_zero()),
            e: b64url(public.exponent().big_endian_without_leading_zero()),
        });
        let der = public.as_der().map_err(|e| err(&e))?;
        let verifier =
            ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref()).map_err(|e| err(&e))?;
        Self::assemble(Algorithm::RS256, Pair::Rsa(pair), params, verifier)
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK, as published (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` as a compact JWS with header `{alg, kid, typ}`.
    pub fn sign_jwt<T: Serialize + ?Sized>(
        &self,
        claims: &T,
        typ: &str,
    ) -> Result<String, KeyError> {
        let header = OwnHeader {
            alg: alg::name(self.alg),
            kid: &self.kid,
            typ,
        };
        // Serialised straight into bytes and encoded into one buffer: `Value`'s `Display`
        // goes through a formatter adapter and cost more than the rest of minting.
        let unserialisable =
            |e: serde_json::Error| KeyError(format!("token not serialisable: {e}"));
        let header = serde_json::to_vec(&header).map_err(unserialisable)?;
        let claims = serde_json::to_vec(claims).map_err(unserialisable)?;
        let mut token = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 128);
        b64url_into(&header, &mut token);
        token.push('.');
        b64url_into(&claims, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        b64url_into(&signature, &mut token);
        Ok(token)
    }

    /// Signs `message` (ECDSA in the fixed-size JWS form).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError("signing failed".into());
        match &self.pair {
            Pair::Ec(p) => Ok(p
                .sign(&self.rng, message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Pair::Ed(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::Rsa(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
        }
    }

    /// Verifies a signature made by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }
}

/// jsonwebtoken's signer interface, served by the key held parsed.
impl signature::Signer<Vec<u8>> for SigningKey {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.sign(msg).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for SigningKey {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn key_algorithm(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        _ => KeyAlgorithm::ES256,
    }
}

/// The label and DER bytes of the one PEM block in `pem`.
fn pem_block(pem: &str) -> Result<(&str, Vec<u8>), KeyError> {
    use base64::Engine;
    let bad = || KeyError("not a PEM private key".into());
    let rest = pem.trim_start();
    let rest = rest.strip_prefix("-----BEGIN ").ok_or_else(bad)?;
    let (label, rest) = rest.split_once("-----").ok_or_else(bad)?;
    let end = format!("-----END {label}-----");
    let (body, _) = rest.split_once(end.as_str()).ok_or_else(bad)?;
    let text: String = body.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| bad())?;
    Ok((label, der))
}

/// A JWS protected header as written here.
#[derive(Serialize)]
struct OwnHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "RSA", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn every_algorithm_round_trips_and_signs() {
        for alg in SIGNING {
            let (key, pkcs8) = SigningKey::generate(alg).unwrap();
            let again = SigningKey::from_pkcs8(alg, &pkcs8).unwrap();
            assert_eq!(key.kid(), again.kid());
            let jwk = serde_json::to_value(key.jwk()).unwrap();
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(jwk["alg"], alg::name(alg));
            assert_eq!(jwk["use"], "sig");
            let token = key.sign_jwt(&json!({"a": 1}), "at+jwt").unwrap();
            let jws = crate::jws::decode(&token).unwrap();
            assert_eq!(
                Value::Object(jws.header),
                json!({"alg": alg::name(alg), "kid": key.kid(), "typ": "at+jwt"})
            );
            assert!(again.verify(jws.signing_input.as_bytes(), &jws.signature));
            let via_trait: &dyn JwtSigner = &key;
            let signature = via_trait.try_sign(b"m").unwrap();
            assert!(key.verify(b"m", &signature) && via_trait.algorithm() == alg);
        }
        assert!(SigningKey::generate(Algorithm::HS256).is_err());
        assert!(SigningKey::from_pkcs8(Algorithm::ES256, b"junk").is_err());
    }

    #[test]
    fn rsa_keys_load_from_pkcs1_and_pkcs8_pem() {
        use base64::Engine;
        let pkcs1 = include_str!("../../../tests/fixtures/idp_rsa_test_key.pem");
        let key = SigningKey::from_rsa_pem(pkcs1).unwrap();
        assert_eq!(key.alg(), Algorithm::RS256);
        let (generated, pkcs8) = SigningKey::generate(Algorithm::RS256).unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(&pkcs8);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        assert_eq!(
            SigningKey::from_rsa_pem(&pem).unwrap().kid(),
            generated.kid()
        );
        let ec = pem.replace("PRIVATE KEY", "EC PRIVATE KEY");
        assert!(SigningKey::from_rsa_pem(&ec).is_err());
        let broken = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----";
        let e = SigningKey::from_rsa_pem(broken).unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
        assert!(SigningKey::from_rsa_pem("not pem").is_err());
    }
}
