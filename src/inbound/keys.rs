//! An issuer's published keys, parsed once into verification keys.
//!
//! Each JWK becomes one key per algorithm it may serve, already parsed by aws-lc-rs, so the
//! hot path never re-parses a key. A JWK whose `kty`/`crv` disagrees with the algorithm, or
//! whose own `alg`/`use` says otherwise, never becomes a key for it.

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

use crate::jose::{InboundAlg, b64url_decode};

/// RSA keys shorter than this are refused (RFC 8725 §3.5; NIST).
const MIN_RSA_BITS: usize = 2048;
/// A JWKS with more keys than this is refused (no issuer publishes hundreds).
pub const MAX_KEYS: usize = 64;

/// One parsed key for one algorithm.
pub struct VerifyKey {
    /// The JWK's `kid`, if any.
    pub kid: Option<String>,
    /// The algorithm it verifies.
    pub alg: InboundAlg,
    key: ParsedPublicKey,
}

impl VerifyKey {
    /// Verifies `signature` over `message`. ECDSA signatures are the fixed-size JOSE form.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({:?}, {})", self.kid, self.alg.as_str())
    }
}

/// The usable keys of one issuer, as last fetched.
#[derive(Debug)]
pub struct KeySet {
    /// Keys, one per (JWK, algorithm).
    pub keys: Vec<VerifyKey>,
    /// When they were fetched.
    pub fetched_at: Instant,
    /// How long they are fresh (from the issuer's `Cache-Control`, within bounds).
    pub ttl: Duration,
    /// How many signing JWKs the issuer publishes (for the no-`kid` rule).
    jwk_count: usize,
}

impl KeySet {
    /// Builds the set from a JWKS document, keeping only keys for `algs`. JWKs that cannot be
    /// used are skipped (an issuer may publish encryption keys too); `None` when nothing usable
    /// remains, so an empty set is never cached.
    pub fn from_jwks(jwks: &Value, algs: &[InboundAlg], ttl: Duration) -> Option<Self> {
        let list = jwks.get("keys")?.as_array()?;
        if list.len() > MAX_KEYS {
            return None;
        }
        let mut keys = Vec::new();
        let mut jwk_count = 0;
        for jwk in list {
            let before = keys.len();
            keys.extend(algs.iter().filter_map(|&alg| parse_jwk(jwk, alg)));
            jwk_count += usize::from(keys.len() > before);
        }
        (!keys.is_empty()).then(|| KeySet {
            keys,
            fetched_at: Instant::now(),
            ttl,
            jwk_count,
        })
    }

    /// Still within its freshness lifetime?
    pub fn is_fresh(&self) -> bool {
        self.fetched_at.elapsed() < self.ttl
    }

    /// The key for a token's `alg` and `kid`. Without a `kid`, only an issuer that publishes
    /// exactly one key is trusted to mean that key: with several, guessing would let a token
    /// pick whichever key suits it.
    pub fn find(&self, alg: InboundAlg, kid: Option<&str>) -> KeyLookup<'_> {
        let mut candidates = self.keys.iter().filter(|k| k.alg == alg);
        match kid {
            Some(kid) => match candidates.find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) => KeyLookup::Found(k),
                None => KeyLookup::UnknownKid,
            },
            None if self.jwk_count > 1 => KeyLookup::Ambiguous,
            None => match candidates.next() {
                Some(k) => KeyLookup::Found(k),
                None => KeyLookup::UnknownKid,
            },
        }
    }
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum KeyLookup<'a> {
    /// This key.
    Found(&'a VerifyKey),
    /// No key with that `kid` (or none at all for the algorithm).
    UnknownKid,
    /// No `kid` and several keys could apply.
    Ambiguous,
}

fn parse_jwk(jwk: &Value, alg: InboundAlg) -> Option<VerifyKey> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("kty")? != alg.key_type() {
        return None;
    }
    if jwk
        .get("alg")
        .is_some_and(|a| a.as_str() != Some(alg.as_str()))
    {
        return None;
    }
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    let bytes = |name: &str| field(name).and_then(b64url_decode);
    let (algorithm, public): (&'static dyn VerificationAlgorithm, Vec<u8>) = match alg {
        InboundAlg::ES256 | InboundAlg::ES384 => {
            let (crv, len, algorithm) = match alg {
                InboundAlg::ES256 => ("P-256", 32, &signature::ECDSA_P256_SHA256_FIXED),
                _ => ("P-384", 48, &signature::ECDSA_P384_SHA384_FIXED),
            };
            if field("crv")? != crv {
                return None;
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (algorithm, point)
        }
        InboundAlg::EdDSA => {
            if field("crv")? != "Ed25519" {
                return None;
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return None;
            }
            (&signature::ED25519, x)
        }
        rsa => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            let n_bits = significant_bits(&n);
            if !(MIN_RSA_BITS..=8192).contains(&n_bits) || e.is_empty() || e.len() > 8 {
                return None;
            }
            let algorithm: &'static dyn VerificationAlgorithm = match rsa {
                InboundAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                InboundAlg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                InboundAlg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                InboundAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                InboundAlg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            (algorithm, rsa_public_key_der(&n, &e))
        }
    };
    let key = ParsedPublicKey::new(algorithm, public).ok()?;
    Some(VerifyKey {
        kid: field("kid").map(str::to_owned),
        alg,
        key,
    })
}

fn significant_bits(n: &[u8]) -> usize {
    let skip = n.iter().take_while(|&&b| b == 0).count();
    match n.get(skip) {
        Some(&first) => (n.len() - skip - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = der_integer(n);
    body.extend(der_integer(e));
    let mut out = vec![0x30];
    out.extend(der_length(body.len()));
    out.extend(body);
    out
}

fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed = &bytes[bytes
        .iter()
        .take_while(|&&b| b == 0)
        .count()
        .min(bytes.len().saturating_sub(1))..];
    let pad = trimmed.first().is_some_and(|&b| b & 0x80 != 0);
    let mut out = vec![0x02];
    out.extend(der_length(trimmed.len() + usize::from(pad)));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    out
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let mut out = vec![0x80 | (bytes.len() - skip) as u8];
    out.extend_from_slice(&bytes[skip..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_encoding() {
        assert_eq!(
            der_integer(&[0x01, 0x00, 0x01]),
            vec![0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(der_integer(&[0x00, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_length(300), vec![0x82, 0x01, 0x2c]);
        assert_eq!(significant_bits(&[0x00, 0x01, 0xff]), 9);
    }

    #[test]
    fn mismatched_jwks_are_not_keys() {
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert!(parse_jwk(&ec, InboundAlg::RS256).is_none());
        assert!(parse_jwk(&ec, InboundAlg::ES384).is_none());
        let hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(parse_jwk(&hmac, InboundAlg::RS256).is_none());
    }
}
