//! Signing keys at rest: AES-256-GCM under the key-encryption key (KEK).
//!
//! Each record is `nonce (12 bytes) || ciphertext || tag`, with the key's id and algorithm as
//! associated data, so a sealed key cannot be moved to another row unnoticed. A wrong KEK
//! fails to open every record, and start-up stops: the broker never "recovers" by minting
//! new keys that relying parties have never seen.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

use crate::secret::Secret;

/// Why a KEK is unusable or a record does not open.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The configured KEK is not 32 bytes of base64.
    #[error(
        "key_encryption_key must be 32 random bytes in base64 (make one with `openssl rand -base64 32` \
         and pass it as STS_BROKER_KEY_ENCRYPTION_KEY or key_encryption_key_file)"
    )]
    BadKek,
    /// The record does not open under this KEK.
    #[error("signing key {0} does not decrypt with this key_encryption_key (wrong KEK?)")]
    WrongKek(String),
    /// Randomness or encryption failed.
    #[error("sealing failed")]
    Failed,
}

/// The key-encryption key. Read from the configuration once, as a key: a KEK that is not
/// 32 bytes of base64 refuses to start, naming the setting.
#[derive(Clone)]
pub struct Kek {
    key: std::sync::Arc<LessSafeKey>,
}

impl<'de> serde::Deserialize<'de> for Kek {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secret = Secret::deserialize(d)?;
        Kek::parse(&secret).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Kek {
    /// Never written anywhere: a configuration holding a KEK is not serialised.
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "the key-encryption key is never serialised",
        ))
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(***)")
    }
}

impl Kek {
    /// Parses a base64 KEK.
    pub fn parse(secret: &Secret) -> Result<Self, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret.expose().trim())
            .map_err(|_| SealError::BadKek)?;
        Self::from_bytes(&bytes)
    }

    /// The fixed development KEK (`serve --dev` without a configured one). It protects
    /// nothing; it only keeps the storage format the same as in production.
    pub fn development() -> Self {
        Self::from_bytes(&[0x5a; 32]).expect("32 bytes make an AES-256 key")
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadKek);
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKek)?;
        Ok(Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
        })
    }

    /// Encrypts a private key for the row (`kid`, `alg`).
    pub fn seal(&self, kid: &str, alg: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Failed)?;
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(kid, alg)),
                &mut data,
            )
            .map_err(|_| SealError::Failed)?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(out)
    }

    /// Decrypts the row (`kid`, `alg`).
    pub fn open(&self, kid: &str, alg: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let wrong = || SealError::WrongKek(kid.to_owned());
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(kid, alg)), &mut data)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

fn aad(kid: &str, alg: &str) -> Vec<u8> {
    format!("sts-broker signing key v1\n{kid}\n{alg}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_refuses_tampering() {
        let kek = Kek::parse(&Secret::new(
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        ))
        .unwrap();
        let sealed = kek.seal("k1", "ES256", b"secret key").unwrap();
        assert_eq!(kek.open("k1", "ES256", &sealed).unwrap(), b"secret key");
        assert!(
            kek.open("k2", "ES256", &sealed).is_err(),
            "bound to its row"
        );
        assert!(
            Kek::development().open("k1", "ES256", &sealed).is_err(),
            "wrong KEK"
        );
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(kek.open("k1", "ES256", &flipped).is_err());
        assert!(Kek::parse(&Secret::new("c2hvcnQ=")).is_err());
    }
}
