//! The broker's shared state: what every request reads.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Secret;
use crate::inbound::Validator;
use crate::mint::{KeyManager, KeyRing, KeyRingError};
use crate::policy::{Limits, PolicySet};
use crate::ratelimit::{RateLimits, client_key};
use crate::revocation::Revocations;
use crate::storage::Storage;
use crate::storage::StoredDocuments;

/// Lifetimes of issued tokens.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// When the policy sets no ttl.
    pub default_ttl: Duration,
    /// Never exceeded.
    pub max_ttl: Duration,
}

/// Everything an exchange needs, shared by all workers.
pub struct Broker {
    /// The broker's `iss`.
    pub issuer_url: String,
    /// Issuers and policies in force; replaced whole on change.
    pub policies: ArcSwap<PolicySet>,
    /// Inbound token validation (with the issuers' key cache).
    pub validator: Validator,
    /// Signing keys in force.
    pub keys: ArcSwap<KeyRing>,
    /// Creates, rotates and unseals signing keys.
    pub key_manager: KeyManager,
    /// Revoked broker tokens (checked by introspection and admin authentication).
    pub revocations: Revocations,
    /// `Cache-Control: max-age` of the JWKS and discovery.
    pub jwks_max_age: Duration,
    /// Commits audit records in groups; exchanges wait for theirs.
    pub audit: crate::audit::AuditWriter,
    /// What `/metrics` exports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Persistence.
    pub store: Arc<dyn Storage>,
    /// Issued token lifetimes.
    pub lifetimes: Lifetimes,
    /// Per-client and per-subject rate limits.
    pub rate_limits: RateLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::http::client_addr::TrustedProxies,
    /// Bounds on what documents may say (for admin edits).
    pub limits: Limits,
    /// Documents in force that are not stored (the `--dev` issuer and policy).
    pub overlay: StoredDocuments,
    /// The bootstrap admin secret, if configured.
    pub admin_token: Option<Secret>,
    /// Serialises admin writes and policy reloads: check-then-write of the whole policy set
    /// is one step, and a reload never installs a set older than a write's.
    pub admin_writes: tokio::sync::Mutex<()>,
    /// Serialises key refreshes, so a slow one never installs an older ring over a newer one.
    pub key_refreshes: tokio::sync::Mutex<()>,
}

impl Broker {
    /// Rotates if due, then reloads the keys from the database (another replica may have
    /// rotated) and puts them in force.
    pub async fn refresh_keys(&self) -> Result<(), KeyRingError> {
        let _one_at_a_time = self.key_refreshes.lock().await;
        let now = crate::jose::unix_now();
        let ring = match self.key_manager.rotate_if_due(&*self.store, now).await? {
            Some(ring) => ring,
            None => self.key_manager.load(&*self.store, now).await?,
        };
        self.install_keys(ring);
        Ok(())
    }

    /// Puts the keys as stored in force, rotating and creating nothing (another replica
    /// changed them).
    pub async fn reload_keys(&self) -> Result<(), KeyRingError> {
        let _one_at_a_time = self.key_refreshes.lock().await;
        let ring = self
            .key_manager
            .read(&*self.store, crate::jose::unix_now())
            .await?;
        self.install_keys(ring);
        Ok(())
    }

    /// Puts a freshly loaded ring in force, logging when it changed.
    pub fn install_keys(&self, ring: KeyRing) {
        let old = self.keys.load();
        if old.etag != ring.etag {
            tracing::info!(active = %ring.active.kid, published = ring.published.len(), "signing keys changed");
            self.keys.store(std::sync::Arc::new(ring));
        }
    }

    /// Admits one request from `client` under the per-client limit, or says how long to wait.
    /// Checked before the body is read, so a flooding client costs little.
    pub fn check_client_rate(&self, client: Option<&str>) -> Result<(), Duration> {
        match (&self.rate_limits.per_client, client) {
            (Some(limiter), Some(client)) => limiter.check(&client_key(client)).inspect_err(|_| {
                self.metrics
                    .rate_limited
                    .get_or_create(&crate::metrics::LimitLabels { limit: "client" })
                    .inc();
            }),
            _ => Ok(()),
        }
    }
}
