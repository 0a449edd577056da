//! Minting the broker's own tokens: signing keys (sealed at rest, rotated with a published
//! successor) and verification of the broker's own tokens.

mod algorithm;
mod keys;
mod manager;
pub mod sealing;
mod signing_key;
pub mod verify;

use std::sync::Arc;

use sts_jose::JwkSet;

pub use algorithm::SigningAlgorithm;
pub use keys::{KeyChange, SigningKeys};
pub use manager::{KeyInfo, KeyManager, KeyPolicy, KeyRingError};
pub use signing_key::{KeyError, SigningKey};

/// The keys in force: the one that signs, and every one that is published.
#[derive(Debug)]
pub struct KeyRing {
    /// Signs new tokens.
    pub active: Arc<SigningKey>,
    /// Published in the JWKS: the next key, the active one, and retired keys that may still
    /// verify a live token.
    pub published: Vec<Arc<SigningKey>>,
    /// The JWKS document, serialised once per ring.
    pub jwks: bytes::Bytes,
    /// Strong validator of `jwks` (and of this ring).
    pub etag: String,
}

impl KeyRing {
    /// A ring signing with `active` and publishing `published` (which holds `active`).
    pub fn new(active: Arc<SigningKey>, published: Vec<Arc<SigningKey>>) -> Self {
        let doc = JwkSet {
            keys: published.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks = bytes::Bytes::from(serde_json::to_vec(&doc).expect("a JWKS serialises"));
        let etag = etag_of(&jwks);
        Self {
            active,
            published,
            jwks,
            etag,
        }
    }

    /// The algorithms of every published key, without repeats (discovery lists them).
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = Vec::new();
        for key in &self.published {
            if !algs.contains(&key.alg.as_str()) {
                algs.push(key.alg.as_str());
            }
        }
        algs
    }
}

/// A strong entity tag for a published document (the JWKS, discovery): a quoted, truncated
/// SHA-256 of its bytes, so equal documents on every replica carry equal tags.
pub fn etag_of(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    format!("\"{}\"", crate::jose::b64url(&digest.as_ref()[..18]))
}
