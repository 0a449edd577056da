//! Issuers' keys: one JOSE-core key cache per key source (an issuer's `url`, `jwks_url` and
//! `algorithms`), so an Issuer whose document changes is served by another cache at once,
//! and nothing fetched for its old document is trusted for the new one.
//!
//! Only registered issuers reach this: the token's own claims never choose a URL (SSRF).

use std::sync::Arc;

use sts_jose::cache::{
    CachePolicy, Event, KeyCache, MAX_STALENESS, MAX_TTL, Observer, Unavailable,
};
use sts_jose::fetch::Fetcher;
use sts_jose::jwk::VerifyKey;
use sts_jose::jwks::Lookup;

use crate::jose::Algorithm;
use crate::metrics::Metrics;
use crate::policy::Issuer;

/// At most this many key sources are held; one unused for longer than keys can be used is
/// dropped (an Issuer whose document changed leaves its old cache behind).
const MAX_SOURCES: u64 = 10_000;

/// Why no key could be had for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The issuer publishes no key with this `kid` for this algorithm.
    #[error("no published key matches the token's kid and alg")]
    UnknownKid,
    /// No `kid` and the issuer has several keys.
    #[error("the token has no kid and the issuer publishes several keys")]
    Ambiguous,
    /// The issuer publishes the token's `kid` more than once.
    #[error("the issuer publishes the token's kid more than once")]
    DuplicateKid,
    /// The issuer's keys cannot be had at all.
    #[error(transparent)]
    Unavailable(Unavailable),
}

/// The key caches of every registered issuer.
pub struct IssuerKeys {
    fetcher: Fetcher,
    policy: CachePolicy,
    metrics: Arc<Metrics>,
    caches: moka::sync::Cache<sts_jose::cache::KeySource, Arc<KeyCache>>,
}

impl IssuerKeys {
    /// Caches over `fetcher`, each behaving as `policy` says.
    pub fn new(fetcher: Fetcher, policy: CachePolicy, metrics: Arc<Metrics>) -> Self {
        Self {
            fetcher,
            policy,
            metrics,
            caches: moka::sync::Cache::builder()
                .max_capacity(MAX_SOURCES)
                .time_to_idle(MAX_TTL + MAX_STALENESS)
                .build(),
        }
    }

    /// Runs `use_key` with `issuer`'s key for (`alg`, `kid`), fetching keys only when they
    /// are missing, or (past the cooldown) lack this key; stale keys are refreshed behind.
    pub async fn with_key<T>(
        &self,
        issuer: &Issuer,
        alg: Algorithm,
        kid: Option<&str>,
        use_key: impl FnOnce(&VerifyKey) -> T,
    ) -> Result<T, KeyError> {
        let cache = self
            .caches
            .get_with_by_ref(&issuer.key_source, || Arc::new(self.cache_for(issuer)));
        let keys = cache
            .keys(|set| set.has(alg, kid))
            .await
            .map_err(KeyError::Unavailable)?;
        match keys.find(alg, kid) {
            Lookup::Found(key) => Ok(use_key(key)),
            Lookup::UnknownKid | Lookup::WrongAlgorithm => Err(KeyError::UnknownKid),
            Lookup::Ambiguous => Err(KeyError::Ambiguous),
            Lookup::DuplicateKid => Err(KeyError::DuplicateKid),
        }
    }

    fn cache_for(&self, issuer: &Issuer) -> KeyCache {
        let (metrics, name) = (self.metrics.clone(), issuer.name.clone());
        let observer: Observer = Arc::new(move |event| match event {
            Event::Hit => metrics.key_cache_hit(&name),
            Event::Fetched { ok } => metrics.key_fetch(&name, ok),
        });
        KeyCache::new(
            issuer.key_source.clone(),
            self.fetcher.clone(),
            self.policy,
            Some(observer),
        )
    }
}
