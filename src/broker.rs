//! The broker's shared state: what every request reads.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Secret;
use crate::inbound::Validator;
use crate::mint::KeyRing;
use crate::policy::{Limits, PolicySet};
use crate::ratelimit::RateLimits;
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
    /// Persistence.
    pub store: Arc<dyn Storage>,
    /// Issued token lifetimes.
    pub lifetimes: Lifetimes,
    /// Per-client and per-subject rate limits.
    pub rate_limits: RateLimits,
    /// Bounds on what documents may say (for admin edits).
    pub limits: Limits,
    /// Documents in force that are not stored (the `--dev` issuer and policy).
    pub overlay: StoredDocuments,
    /// The bootstrap admin secret, if configured.
    pub admin_token: Option<Secret>,
    /// Serialises admin writes: check-then-write of the whole policy set is one step.
    pub admin_writes: tokio::sync::Mutex<()>,
}

impl Broker {
    /// Admits one request from `client` under the per-client limit, or says how long to wait.
    /// Checked before the body is read, so a flooding client costs little.
    pub fn check_client_rate(&self, client: Option<&str>) -> Result<(), Duration> {
        match (&self.rate_limits.per_client, client) {
            (Some(limiter), Some(client)) => limiter.check(client),
            _ => Ok(()),
        }
    }
}
