//! The broker's own signing keys: generated with aws-lc-rs, held parsed, published as JWKs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use serde_json::{Value, json};

use super::SigningAlgorithm;
use crate::jose::{b64url, b64url_into};

/// Why a key could not be made or loaded.
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
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// Its algorithm.
    pub alg: SigningAlgorithm,
    /// The public JWK, as published.
    pub jwk: Value,
    pair: Pair,
    /// The public half, parsed once, to verify the broker's own tokens (admin, introspection).
    verifier: ParsedPublicKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.kid, self.alg.as_str())
    }
}

impl SigningKey {
    /// Generates a new key; returns it and its PKCS#8 encoding for storage.
    pub fn generate(alg: SigningAlgorithm) -> Result<(Self, Vec<u8>), KeyError> {
        let err =
            |e: &dyn std::fmt::Display| KeyError(format!("cannot generate {}: {e}", alg.as_str()));
        let pkcs8 = match alg {
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(|e| err(&e))?
                    .as_ref()
                    .to_vec()
            }
            SigningAlgorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|e| err(&e))?
                .as_der()
                .map_err(|e| err(&e))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|e| err(&e))?
                .as_ref()
                .to_vec(),
        };
        Ok((Self::from_pkcs8(alg, &pkcs8)?, pkcs8))
    }

    /// Loads a stored PKCS#8 key.
    pub fn from_pkcs8(alg: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let err = |e: &dyn std::fmt::Display| {
            KeyError(format!("stored {} key is unusable: {e}", alg.as_str()))
        };
        let verifier_err = |e: KeyRejected| err(&e);
        let (pair, jwk, verifier) = match alg {
            SigningAlgorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|e| err(&e))?;
                let point = pair.public_key().as_ref();
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..65])});
                let verifier =
                    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(verifier_err)?;
                (Pair::Ec(pair), jwk, verifier)
            }
            SigningAlgorithm::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| err(&e))?;
                let public = pair.public_key();
                let jwk = json!({"kty": "RSA", "n": b64url(public.modulus().big_endian_without_leading_zero()), "e": b64url(public.exponent().big_endian_without_leading_zero())});
                let der = public.as_der().map_err(|e| err(&e))?;
                let verifier = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref())
                    .map_err(verifier_err)?;
                (Pair::Rsa(pair), jwk, verifier)
            }
            SigningAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| err(&e))?;
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(pair.public_key().as_ref())});
                let verifier = ParsedPublicKey::new(&ED25519, pair.public_key().as_ref())
                    .map_err(verifier_err)?;
                (Pair::Ed(pair), jwk, verifier)
            }
        };
        let kid = thumbprint(&jwk);
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        Ok(Self {
            kid,
            alg,
            jwk,
            pair,
            verifier,
            rng: SystemRandom::new(),
        })
    }

    /// Signs `claims` as a compact JWS with header `{alg, kid, typ}` (`at+jwt` for the
    /// broker's access tokens, RFC 9068).
    pub fn sign_jwt(&self, claims: &Value, typ: &str) -> Result<String, KeyError> {
        let header = Header {
            alg: self.alg.as_str(),
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

    /// Verifies a signature made by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
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
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        _ => &["crv", "kty", "x"],
    };
    // serde_json's Map is sorted (no preserve_order), so this serialises canonically.
    let canonical: serde_json::Map<String, Value> = members
        .iter()
        .map(|m| ((*m).to_owned(), jwk[*m].clone()))
        .collect();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        Value::Object(canonical).to_string().as_bytes(),
    );
    b64url(digest.as_ref())
}

/// A JWS protected header as the broker writes it.
#[derive(serde::Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn every_algorithm_round_trips_through_pkcs8() {
        for alg in [
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::RS256,
        ] {
            let (key, pkcs8) = SigningKey::generate(alg).unwrap();
            let again = SigningKey::from_pkcs8(alg, &pkcs8).unwrap();
            assert_eq!(key.kid, again.kid);
            assert_eq!(
                key.sign_jwt(&json!({"a": 1}), "JWT")
                    .unwrap()
                    .split('.')
                    .count(),
                3
            );
        }
    }
}
