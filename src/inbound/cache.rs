//! The cache of issuers' keys: one entry per registered issuer.
//!
//! - Concurrent misses for one issuer share one fetch (a per-issuer lock, re-checked after
//!   it is taken), so a cold cache hit by a thousand requests makes one fetch.
//! - An unknown `kid` refetches at most once per cooldown per issuer: random `kid`s cannot
//!   turn the broker into a flood against the issuer, and a miss never evicts good keys.
//! - Freshness follows the issuer's `Cache-Control: max-age`, bounded below by the cooldown
//!   and above by a day.
//! - When a refresh fails, the last good keys keep serving up to a bounded staleness; a
//!   failed fetch is not retried within the cooldown (negative caching); an empty key set is
//!   never cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::Mutex;

use super::fetch::{FetchError, Fetcher};
use super::keys::{KeyLookup, KeySet, VerifyKey};
use crate::jose::InboundAlg;
use crate::metrics::{FetchLabels, IssuerLabels, Metrics};
use crate::policy::Issuer;

/// Last good keys serve at most this long past their freshness while the issuer is down.
const MAX_STALENESS: Duration = Duration::from_secs(6 * 3600);
/// Upper bound on an issuer's `max-age`.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
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
    last_attempt: Mutex<Option<Instant>>,
}

/// Bounds of the cache.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Freshness when the issuer sends no `max-age`.
    pub default_ttl: Duration,
    /// Least time between two fetches of one issuer (also the least freshness).
    pub cooldown: Duration,
}

/// Issuers' keys, fetched on demand and cached.
pub struct KeyCache {
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
    entries: moka::sync::Cache<String, Arc<IssuerKeys>>,
    policy: CachePolicy,
}

impl KeyCache {
    /// A cache over `fetcher`.
    pub fn new(fetcher: Fetcher, policy: CachePolicy, metrics: Arc<Metrics>) -> Self {
        Self {
            fetcher,
            metrics,
            entries: moka::sync::Cache::new(MAX_ISSUERS),
            policy,
        }
    }

    /// Runs `use_key` with the key for (`alg`, `kid`) of a registered issuer, fetching keys
    /// only when they are missing, stale, or (past the cooldown) lack this `kid`.
    pub async fn with_key<T>(
        &self,
        issuer: &Issuer,
        alg: InboundAlg,
        kid: Option<&str>,
        use_key: impl Fn(&VerifyKey) -> T,
    ) -> Result<T, KeyError> {
        let entry = self.entries.get_with_by_ref(&issuer.url, Default::default);
        // The hot path: fresh keys that hold this kid, no lock taken.
        if let Some(set) = entry.current.load_full()
            && set.is_fresh()
            && let KeyLookup::Found(k) = set.find(alg, kid)
        {
            self.metrics
                .key_cache_hits
                .get_or_create(&IssuerLabels {
                    issuer: issuer.name.clone(),
                })
                .inc();
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
        alg: InboundAlg,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, KeyError> {
        let mut last_attempt = entry.last_attempt.lock().await;
        // Someone may have fetched while we waited for the lock.
        let current = entry.current.load_full();
        let cooling = last_attempt.is_some_and(|t| t.elapsed() < self.policy.cooldown);
        match &current {
            Some(set) => {
                let has_key = matches!(set.find(alg, kid), KeyLookup::Found(_));
                let usable = set.fetched_at.elapsed() < set.ttl + MAX_STALENESS;
                if (set.is_fresh() && has_key) || (cooling && usable) {
                    return Ok(set.clone());
                }
            }
            None if cooling => {
                return Err(KeyError::Unavailable(FetchError::Invalid(format!(
                    "{} keys were unavailable moments ago",
                    issuer.url
                ))));
            }
            None => {}
        }
        *last_attempt = Some(Instant::now());
        match self.fetch(issuer).await {
            Ok(set) => {
                let set = Arc::new(set);
                entry.current.store(Some(set.clone()));
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.name, error = %e, "issuer key refresh failed");
                match current {
                    Some(set) if set.fetched_at.elapsed() < set.ttl + MAX_STALENESS => Ok(set),
                    _ => Err(KeyError::Unavailable(e)),
                }
            }
        }
    }

    async fn fetch(&self, issuer: &Issuer) -> Result<KeySet, FetchError> {
        let result = self.fetch_unmetered(issuer).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .key_fetches
            .get_or_create(&FetchLabels {
                issuer: issuer.name.clone(),
                outcome,
            })
            .inc();
        result
    }

    async fn fetch_unmetered(&self, issuer: &Issuer) -> Result<KeySet, FetchError> {
        let fetched = self.fetcher.fetch_jwks(issuer).await?;
        let ttl = fetched.max_age.map_or(self.policy.default_ttl, |age| {
            age.clamp(self.policy.cooldown, MAX_TTL.max(self.policy.cooldown))
        });
        KeySet::from_jwks(&fetched.jwks, &issuer.algorithms, ttl)
            .ok_or_else(|| FetchError::Invalid(format!("{} publishes no usable key", issuer.url)))
    }
}
