//! Signing keys through the API: list them, rotate on demand, replace them all after a
//! compromise.

use serde_json::json;

use super::{AdminError, Principal};
use crate::broker::Broker;
use crate::mint::{KeyInfo, KeyRingError};
use crate::storage::StorageError;

impl Broker {
    /// Every stored key with its state and dates.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, AdminError> {
        self.key_manager.list(&*self.store).await.map_err(key_error)
    }

    /// Promotes the published next key, retires the active one, publishes a new next key,
    /// and puts the result in force; audited.
    pub async fn rotate_keys(
        &self,
        who: &Principal,
        request_id: &str,
    ) -> Result<Vec<KeyInfo>, AdminError> {
        self.change_keys(who, request_id, KeyChange::Rotate).await
    }

    /// Emergency replacement of every key ([`KeyManager::replace`]); audited with the kids
    /// it removed.
    ///
    /// [`KeyManager::replace`]: crate::mint::KeyManager::replace
    pub async fn replace_keys(
        &self,
        who: &Principal,
        request_id: &str,
    ) -> Result<Vec<KeyInfo>, AdminError> {
        self.change_keys(who, request_id, KeyChange::Replace).await
    }

    async fn change_keys(
        &self,
        who: &Principal,
        request_id: &str,
        change: KeyChange,
    ) -> Result<Vec<KeyInfo>, AdminError> {
        // Not interleaved with the rotation timer or a reload for another replica's change,
        // so an older ring is never installed over this one.
        let _one_at_a_time = self.key_refreshes.lock().await;
        let now = crate::jose::unix_now();
        let (ring, action, detail) = match change {
            KeyChange::Rotate => {
                let retired = self.keys.load().active.kid.clone();
                let ring = self.key_manager.rotate(&*self.store, now).await;
                let ring = ring.map_err(key_error)?;
                let detail = json!({"retired": retired, "active": ring.active.kid});
                (ring, "rotate_keys", detail)
            }
            KeyChange::Replace => {
                let replaced = self.key_manager.replace(&*self.store, now).await;
                let (ring, removed) = replaced.map_err(key_error)?;
                let detail = json!({"removed": removed, "active": ring.active.kid});
                (ring, "replace_keys", detail)
            }
        };
        self.install_keys(ring);
        super::record_change(&*self.store, who, request_id, action, detail, now).await?;
        self.list_keys().await
    }
}

/// What an admin asked of the signing keys.
#[derive(Clone, Copy)]
enum KeyChange {
    /// The routine rotation.
    Rotate,
    /// Every key replaced after a compromise.
    Replace,
}

fn key_error(e: KeyRingError) -> AdminError {
    match e {
        KeyRingError::Storage(StorageError::Conflict { .. }) => AdminError::Conflict(
            "another rotation happened at the same time; list the keys and retry".into(),
        ),
        KeyRingError::Storage(e) => AdminError::Storage(e),
        KeyRingError::TooSoon { .. } => AdminError::Conflict(e.to_string()),
        other => AdminError::Storage(StorageError::Corrupt(other.to_string())),
    }
}
