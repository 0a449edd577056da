//! Is this broker ready to serve? Whether audit records can be committed now, its own
//! database and signing keys; never the upstream issuers (one issuer being down must not
//! take every replica out).

use std::sync::Arc;

use crate::mint::SigningKeys;
use crate::storage::Storage;
use crate::trail::AuditWriter;

/// The answer to a readiness probe.
#[derive(Debug)]
pub enum Readiness {
    /// Ready; the key that signs.
    Ready {
        /// Its `kid`.
        signing_key: String,
    },
    /// Audit records are committed (to the journal), but the database is down: exchanges go
    /// on and are indexed when it returns; admin changes and replay-protected issuers fail.
    DatabaseDown,
    /// Not ready: audit records cannot be committed now (a full disk, an unwritable journal,
    /// the database when it is the durable write), so every exchange would answer 503.
    AuditDown,
}

/// Answers readiness probes.
pub struct ReadinessProbe {
    store: Arc<dyn Storage>,
    audit: AuditWriter,
    keys: Arc<SigningKeys>,
}

impl ReadinessProbe {
    /// A probe of these parts.
    pub fn new(store: Arc<dyn Storage>, audit: AuditWriter, keys: Arc<SigningKeys>) -> Self {
        Self { store, audit, keys }
    }

    /// Checks now.
    pub async fn check(&self) -> Readiness {
        if !self.audit.can_commit() {
            return Readiness::AuditDown;
        }
        match self.store.ping().await {
            Ok(()) => Readiness::Ready {
                signing_key: self.keys.current().active.kid.clone(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "readiness: database unavailable");
                match self.audit.is_journaled() {
                    true => Readiness::DatabaseDown,
                    // The database commit is the durable write: nothing can be audited.
                    false => Readiness::AuditDown,
                }
            }
        }
    }
}
