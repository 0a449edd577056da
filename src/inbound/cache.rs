//! The cache of issuers' keys: one entry per registered issuer.
//!
//! - Concurrent misses for one issuer share one fetch (a per-issuer lock, re-checked after
//!   it is taken), so a cold cache hit by a thousand requests makes one fetch.
//! - An unknown `kid` refetches at most once per cooldown per issuer: random `kid`s cannot
//!   turn the broker into a flood against the issuer, and a miss never evicts good keys.
//! - When a refresh fails, the last good keys keep serving up to a bounded staleness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::Mutex;

use super::fetch::{FetchError, Fetcher};
use super::keys::{KeyLookup, KeySet};
use crate::policy::Issuer;

/// Last good keys serve at most this long past their refresh time while the issuer is down.
const MAX_STALENESS: Duration = Duration::from_secs(6 * 3600);
/// At most this many issuers' key sets are held.
const MAX_ISSUERS: u64 = 10_000;

/// Why no key could be had for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The issuer publishes no key with this `kid` for this algorithm.
    #[error("no published key matches the token's kid and alg")]
    UnknownKid,
    /// No `kid` and the issuer has several keys.
    #[error("the token has no kid and the issuer publishes several keys")]
    Ambiguous,
    /// The issuer's keys cannot be had at all.
    #[error("issuer keys unavailable: {0}")]
    Unavailable(#[source] FetchError),
}

#[derive(Default)]
struct IssuerKeys {
    current: ArcSwapOption<KeySet>,
    /// Held while fetching; holds the time of the last fetch attempt.
    fetch: Mutex<Option<Instant>>,
}

/// Issuers' keys, fetched on demand and cached.
pub struct KeyCache {
    fetcher: Fetcher,
    entries: moka::sync::Cache<String, Arc<IssuerKeys>>,
    ttl: Duration,
    cooldown: Duration,
}

impl KeyCache {
    /// A cache that refreshes keys after `ttl` and refetches for unknown `kid`s at most once
    /// per `cooldown`.
    pub fn new(fetcher: Fetcher, ttl: Duration, cooldown: Duration) -> Self {
        Self {
            fetcher,
            entries: moka::sync::Cache::new(MAX_ISSUERS),
            ttl,
            cooldown,
        }
    }

    /// Runs `use_key` with the key for (`alg`, `kid`) of a registered issuer, fetching keys
    /// only when they are missing, expired, or (past the cooldown) lack this `kid`.
    pub async fn with_key<T>(
        &self,
        issuer: &Issuer,
        alg: crate::jose::InboundAlg,
        kid: Option<&str>,
        use_key: impl Fn(&super::keys::VerifyKey) -> T,
    ) -> Result<T, KeyError> {
        let entry = self.entries.get_with_by_ref(&issuer.url, Default::default);
        if let Some(set) = entry.current.load_full()
            && set.fetched_at.elapsed() < self.ttl
            && let KeyLookup::Found(k) = set.find(alg, kid)
        {
            return Ok(use_key(k));
        }
        let set = self.refresh(&entry, issuer, alg, kid).await?;
        match set.find(alg, kid) {
            KeyLookup::Found(k) => Ok(use_key(k)),
            KeyLookup::UnknownKid => Err(KeyError::UnknownKid),
            KeyLookup::Ambiguous => Err(KeyError::Ambiguous),
        }
    }

    async fn refresh(
        &self,
        entry: &IssuerKeys,
        issuer: &Issuer,
        alg: crate::jose::InboundAlg,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, KeyError> {
        let mut last_fetch = entry.fetch.lock().await;
        // Someone may have fetched while we waited for the lock.
        let current = entry.current.load_full();
        let cooling = last_fetch.is_some_and(|t| t.elapsed() < self.cooldown);
        match &current {
            Some(set) => {
                let age = set.fetched_at.elapsed();
                let has_key = matches!(set.find(alg, kid), KeyLookup::Found(_));
                // Fresh and complete; or fetched (or tried) within the cooldown: use what we have.
                if (age < self.ttl && has_key) || (cooling && age < self.ttl + MAX_STALENESS) {
                    return Ok(set.clone());
                }
            }
            // A failed fetch is not retried within the cooldown (negative caching).
            None if cooling => {
                return Err(KeyError::Unavailable(FetchError::Invalid(format!(
                    "{} keys recently unavailable",
                    issuer.url
                ))));
            }
            None => {}
        }
        *last_fetch = Some(Instant::now());
        let fetched = self.fetcher.fetch_jwks(&issuer.url).await.and_then(|jwks| {
            KeySet::from_jwks(&jwks, &issuer.algorithms).ok_or_else(|| {
                FetchError::Invalid(format!("{} publishes no usable key", issuer.url))
            })
        });
        match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                entry.current.store(Some(set.clone()));
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.name, error = %e, "issuer key refresh failed");
                match current {
                    Some(set) if set.fetched_at.elapsed() < self.ttl + MAX_STALENESS => Ok(set),
                    _ => Err(KeyError::Unavailable(e)),
                }
            }
        }
    }
}
