//! The signing keys in force, and every change to them: the rotation timer's, another
//! replica's, and an admin's (audited).
//!
//! Changes are serialised: a slow refresh must never install an older ring over a newer one.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use serde_json::json;

use super::{KeyInfo, KeyManager, KeyPolicy, KeyRing, KeyRingError};
use crate::audit::{Actor, AuditEvent};
use crate::storage::Storage;
use crate::trail::AuditWriter;

/// The broker's signing keys.
pub struct SigningKeys {
    manager: KeyManager,
    ring: ArcSwap<KeyRing>,
    store: Arc<dyn Storage>,
    audit: AuditWriter,
    changes: tokio::sync::Mutex<()>,
}

/// What an admin asked of the signing keys.
#[derive(Debug, Clone, Copy)]
pub enum KeyChange {
    /// The routine rotation: the published next key signs, a new next key is published.
    Rotate,
    /// Every key replaced at once, after a compromise.
    Replace,
}

impl SigningKeys {
    /// Loads the ring (creating the first keys, see [`KeyManager::load`]).
    pub async fn load(
        manager: KeyManager,
        store: Arc<dyn Storage>,
        audit: AuditWriter,
    ) -> Result<Self, KeyRingError> {
        let ring = manager.load(&*store, crate::jose::unix_now()).await?;
        Ok(Self {
            manager,
            ring: ArcSwap::from_pointee(ring),
            store,
            audit,
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// The keys in force now (cheap: no lock, no copy).
    pub fn current(&self) -> Guard<Arc<KeyRing>> {
        self.ring.load()
    }

    /// How keys are made and rotated.
    pub fn policy(&self) -> &KeyPolicy {
        self.manager.policy()
    }

    /// Rotates if due, then reloads the keys from the database (another replica may have
    /// rotated) and puts them in force.
    pub async fn refresh(&self) -> Result<(), KeyRingError> {
        let _one_at_a_time = self.changes.lock().await;
        let now = crate::jose::unix_now();
        let ring = match self.manager.rotate_if_due(&*self.store, now).await? {
            Some(ring) => ring,
            None => self.manager.load(&*self.store, now).await?,
        };
        self.install(ring);
        Ok(())
    }

    /// Puts the keys as stored in force, rotating and creating nothing (another replica
    /// changed them).
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let _one_at_a_time = self.changes.lock().await;
        let ring = self
            .manager
            .read(&*self.store, crate::jose::unix_now())
            .await?;
        self.install(ring);
        Ok(())
    }

    /// Every stored key with its state and dates.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyRingError> {
        self.manager.list(&*self.store).await
    }

    /// Makes an admin's change, puts the result in force and records it in the audit trail
    /// before answering; returns the keys as they are now.
    pub async fn change(
        &self,
        change: KeyChange,
        actor: Actor<'_>,
    ) -> Result<Vec<KeyInfo>, KeyRingError> {
        // Not interleaved with the rotation timer or a reload for another replica's change,
        // so an older ring is never installed over this one.
        let _one_at_a_time = self.changes.lock().await;
        let now = crate::jose::unix_now();
        let (ring, action, detail) = match change {
            KeyChange::Rotate => {
                let retired = self.ring.load().active.kid.clone();
                let ring = self.manager.rotate(&*self.store, now).await?;
                let detail = json!({"retired": retired, "active": ring.active.kid});
                (ring, "rotate_keys", detail)
            }
            KeyChange::Replace => {
                let (ring, removed) = self.manager.replace(&*self.store, now).await?;
                let detail = json!({"removed": removed, "active": ring.active.kid});
                (ring, "replace_keys", detail)
            }
        };
        self.install(ring);
        let record = AuditEvent::admin_change(actor, action, detail, now);
        self.audit.record(record).await?;
        tracing::info!(request_id = actor.request_id, actor = %actor.name, action, "admin change");
        self.manager.list(&*self.store).await
    }

    /// Puts a freshly loaded ring in force, logging when it changed.
    fn install(&self, ring: KeyRing) {
        if self.ring.load().etag != ring.etag {
            tracing::info!(active = %ring.active.kid, published = ring.published.len(), "signing keys changed");
            self.ring.store(Arc::new(ring));
        }
    }
}
