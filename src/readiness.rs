//! Is this broker ready to serve? Its own database and signing keys, and whether audit
//! records can be committed; never the upstream issuers (one issuer being down must not take
//! every replica out).

use std::sync::Arc;

use crate::audit::AuditWriter;
use crate::mint::SigningKeys;
use crate::storage::Storage;

/// The answer to a readiness probe.
#[derive(Debug)]
pub enum Readiness {
    /// Ready; the key that signs.
    Ready {
        /// Its `kid`.
        signing_key: String,
    },
    /// The database is down, but audit records are spooled locally within the grace period.
    Spooling,
    /// Not ready: the database is down and nothing covers the outage.
    DatabaseDown,
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
        match self.store.ping().await {
            Ok(()) => Readiness::Ready {
                signing_key: self.keys.current().active.kid.clone(),
            },
            Err(e) if self.audit.covers_outage() => {
                tracing::warn!(error = %e, "readiness: database unavailable; audit records are spooled");
                Readiness::Spooling
            }
            Err(e) => {
                tracing::warn!(error = %e, "readiness: database unavailable");
                Readiness::DatabaseDown
            }
        }
    }
}
