//! Minting the broker's own tokens: signing keys and the claims of an issued token.

mod signing_key;
pub mod verify;

use std::sync::Arc;

use serde_json::{Value, json};

pub use signing_key::{KeyError, SigningKey};

use crate::config::SigningAlgorithm;
use crate::storage::{Storage, StorageError, StoredKey};

/// The keys in force: the one that signs, and every one that is published.
#[derive(Debug)]
pub struct KeyRing {
    /// Signs new tokens.
    pub active: Arc<SigningKey>,
    /// Published in the JWKS (includes `active`).
    pub published: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    /// The public JWKS document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }
}

/// Why the key ring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Loads the active key for `alg`, generating and storing one on first start.
pub async fn load_or_create(
    store: &dyn Storage,
    alg: SigningAlgorithm,
    now: i64,
) -> Result<KeyRing, KeyRingError> {
    let stored = store.signing_keys().await?;
    let mut published = Vec::new();
    let mut active = None;
    for key in stored.iter().filter(|k| k.state == "active") {
        let Some(key_alg) = parse_alg(&key.alg) else {
            continue;
        };
        let loaded = Arc::new(SigningKey::from_pkcs8(key_alg, &key.private_key)?);
        if key_alg == alg {
            active = Some(loaded.clone());
        }
        published.push(loaded);
    }
    let active = match active {
        Some(k) => k,
        None => {
            let (key, pkcs8) = SigningKey::generate(alg)?;
            store
                .insert_signing_key(&StoredKey {
                    kid: key.kid.clone(),
                    alg: alg.as_str().into(),
                    private_key: pkcs8,
                    state: "active".into(),
                    created_at: now,
                })
                .await?;
            tracing::info!(kid = %key.kid, alg = alg.as_str(), "generated a new signing key");
            let key = Arc::new(key);
            published.push(key.clone());
            key
        }
    };
    Ok(KeyRing { active, published })
}

fn parse_alg(name: &str) -> Option<SigningAlgorithm> {
    match name {
        "ES256" => Some(SigningAlgorithm::ES256),
        "RS256" => Some(SigningAlgorithm::RS256),
        "EdDSA" => Some(SigningAlgorithm::EdDSA),
        _ => None,
    }
}
