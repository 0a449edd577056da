//! Algorithm pinning. Tokens are only ever verified with an asymmetric algorithm that the
//! caller allowed: `none` has no name here at all (jsonwebtoken's [`Algorithm`] has no such
//! variant) and the HMAC family never gets a key, because an issuer's key is public and an
//! HMAC "signature" keyed with it proves nothing (CVE-2017-11424, CVE-2022-29217).

use aws_lc_rs::signature::{self, VerificationAlgorithm};
pub use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// Every algorithm a token may be verified with.
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parses a JOSE `alg` name (case-sensitive, RFC 7515); `None` for HMAC and anything unknown.
pub fn parse(name: &str) -> Option<Algorithm> {
    name.parse()
        .ok()
        .filter(|a: &Algorithm| a.family() != AlgorithmFamily::Hmac)
}

/// The JOSE name.
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // The enum is non-exhaustive: a future variant is unknown to this crate, so it gets
        // no key and no name that could match a JWK's.
        _ => "unsupported",
    }
}

/// The aws-lc-rs verification of an asymmetric algorithm; `None` for HMAC. ECDSA takes the
/// fixed-size `r || s` form of JWS (RFC 7518 §3.4), not DER. RSA moduli outside 2048–8192
/// bits are refused when the key is parsed (RFC 8725 §3.5).
pub(crate) fn verification(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_parse() {
        for alg in ASYMMETRIC {
            assert_eq!(parse(name(alg)), Some(alg));
            assert!(verification(alg).is_some());
        }
        for refused in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "",
        ] {
            assert_eq!(parse(refused), None, "{refused}");
        }
        assert!(verification(Algorithm::HS256).is_none());
    }
}
