//! The broker's own signing keys: the JOSE core's, named by the configured algorithm.

use serde::Serialize;
use sts_jose::Jwk;
pub use sts_jose::sign::KeyError;

use super::SigningAlgorithm;
use crate::jose::Algorithm;

/// A private key ready to sign, with its public JWK.
pub struct SigningKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// Its algorithm.
    pub alg: SigningAlgorithm,
    /// The public JWK, as published.
    pub jwk: Jwk,
    key: sts_jose::sign::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {})", self.kid, self.alg.as_str())
    }
}

impl SigningKey {
    /// Generates a new key; returns it and its PKCS#8 encoding for storage.
    pub fn generate(alg: SigningAlgorithm) -> Result<(Self, Vec<u8>), KeyError> {
        let (key, pkcs8) = sts_jose::sign::SigningKey::generate(jose(alg))?;
        Ok((Self::new(alg, key), pkcs8))
    }

    /// Loads a stored PKCS#8 key.
    pub fn from_pkcs8(alg: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        Ok(Self::new(
            alg,
            sts_jose::sign::SigningKey::from_pkcs8(jose(alg), pkcs8)?,
        ))
    }

    fn new(alg: SigningAlgorithm, key: sts_jose::sign::SigningKey) -> Self {
        Self {
            kid: key.kid().to_owned(),
            alg,
            jwk: key.jwk().clone(),
            key,
        }
    }

    /// Signs `claims` as a compact JWS with header `{alg, kid, typ}` (`at+jwt` for the
    /// broker's access tokens, RFC 9068).
    pub fn sign_jwt<T: Serialize + ?Sized>(
        &self,
        claims: &T,
        typ: &str,
    ) -> Result<String, KeyError> {
        self.key.sign_jwt(claims, typ)
    }

    /// Its algorithm as the JOSE core names it.
    pub fn jose_alg(&self) -> Algorithm {
        jose(self.alg)
    }

    /// Signs raw bytes (tests build headers the broker never writes).
    #[cfg(test)]
    pub(super) fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).unwrap()
    }

    /// Verifies a signature made by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify(message, signature)
    }
}

fn jose(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::RS256 => Algorithm::RS256,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}
