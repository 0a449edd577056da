//! Keys generated in the tests, signing tokens the way the broker does.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Algorithm;

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A fresh private key for one algorithm.
pub(crate) struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pair: Pair,
}

impl TestKey {
    pub fn generate(alg: Algorithm) -> Self {
        let rng = SystemRandom::new();
        let pair = match alg {
            Algorithm::ES256 => {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                Pair::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                        .unwrap(),
                )
            }
            Algorithm::RS256 => {
                let der = RsaKeyPair::generate(KeySize::Rsa2048)
                    .unwrap()
                    .as_der()
                    .unwrap();
                Pair::Rsa(RsaKeyPair::from_pkcs8(der.as_ref()).unwrap())
            }
            Algorithm::EdDSA => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                Pair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
            }
        };
        let kid = format!(
            "{alg}-{}",
            b64url(&aws_lc_rs::rand::generate::<[u8; 6]>(&rng).unwrap().expose())
        );
        Self { alg, kid, pair }
    }

    /// The public JWK, as the broker publishes it.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Ec(p) => {
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..])})
            }
            Pair::Rsa(p) => {
                let public = p.public_key();
                json!({"kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero())})
            }
            Pair::Ed(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(p.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.as_str());
        jwk["use"] = json!("sig");
        jwk
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(p) => p.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message).as_ref().to_vec(),
            Pair::Rsa(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }

    /// A compact JWS with this header and these claims.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64url(&signature))
    }

    /// A token with the broker's header: `{alg, kid, typ: "at+jwt"}`.
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": "at+jwt"});
        self.token_with_header(&header, claims)
    }
}
