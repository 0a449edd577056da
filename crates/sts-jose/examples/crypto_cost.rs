//! What one token costs to sign and to verify with jsonwebtoken's `encode`/`decode` (which
//! build their signer or verifier from key bytes on every call) next to the core's keys,
//! parsed once and held. The numbers behind README "Dependencies".
//!
//! `cargo run --release -p sts-jose --example crypto_cost`

use std::time::Instant;

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sts_jose::jwk::VerifyKey;
use sts_jose::sign::SigningKey;
use sts_jose::{Algorithm, alg, header, jws};

/// Microseconds per call of `f`, the best of three rounds of `n` calls.
fn micros(n: u32, mut f: impl FnMut()) -> f64 {
    (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (what jsonwebtoken's RSA
/// signer parses): SEQUENCE { version, AlgorithmIdentifier, OCTET STRING { key } }.
fn pkcs1_of(pkcs8: &[u8]) -> &[u8] {
    // Returns (content, rest) of the DER element at the start of `der`.
    fn element(der: &[u8]) -> (&[u8], &[u8]) {
        let (len, header) = match der[1] {
            n if n < 0x80 => (usize::from(n), 2),
            n => {
                let count = usize::from(n & 0x7f);
                let len = der[2..2 + count]
                    .iter()
                    .fold(0, |acc, &b| (acc << 8) | usize::from(b));
                (len, 2 + count)
            }
        };
        (&der[header..header + len], &der[header + len..])
    }
    let (info, _) = element(pkcs8);
    let (_version, rest) = element(info);
    let (_algorithm, rest) = element(rest);
    element(rest).0
}

fn main() {
    let claims = json!({
        "iss": "https://sts.example.com", "sub": "github-actions:acme/api@refs/heads/main",
        "aud": "https://deploy.internal", "exp": 1_900_000_000, "iat": 1_899_999_400,
        "nbf": 1_899_999_400, "jti": "0192f0c4-6a57-7cc1-b2d1-3f5e8a1d9c20",
        "scope": "deploy:write artifacts:read", "client_id": "api-deploy",
        "act": {"iss": "https://token.actions.githubusercontent.com", "sub": "repo:acme/api:ref:refs/heads/main"},
    });
    println!(
        "| alg | sign: core | sign: jsonwebtoken::encode | verify: core | verify: jsonwebtoken::decode |"
    );
    println!("|---|---:|---:|---:|---:|");
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let n = if alg == Algorithm::RS256 { 300 } else { 3000 };
        let (key, pkcs8) = SigningKey::generate(alg).unwrap();
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&pkcs8),
            Algorithm::RS256 => EncodingKey::from_rsa_der(pkcs1_of(&pkcs8)),
            _ => EncodingKey::from_ed_der(&pkcs8),
        };
        let mut jwt_header = Header::new(alg);
        jwt_header.kid = Some(key.kid().to_owned());
        jwt_header.typ = Some("at+jwt".into());
        let ours = micros(n, || drop(key.sign_jwt(&claims, "at+jwt").unwrap()));
        let theirs = micros(n, || {
            drop(jsonwebtoken::encode(&jwt_header, &claims, &encoding).unwrap())
        });

        let token = key.sign_jwt(&claims, "at+jwt").unwrap();
        let verify_key = VerifyKey::from_jwk(key.jwk(), alg).unwrap();
        let decoding = DecodingKey::from_jwk(key.jwk()).unwrap();
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let n = n * 3;
        let ours_verify = micros(n, || {
            let jws = jws::decode(&token).unwrap();
            header::check(&jws.header, &[alg]).unwrap();
            assert!(verify_key.verify(jws.signing_input.as_bytes(), &jws.signature));
        });
        let theirs_verify = micros(n, || {
            jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
        });
        println!(
            "| {} | {ours:.1} µs | {theirs:.1} µs | {ours_verify:.1} µs | {theirs_verify:.1} µs |",
            alg::name(alg)
        );
    }
}
