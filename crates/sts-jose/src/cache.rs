//! The key cache of one source (an issuer, its `jwks_url`, the algorithms it may use).
//!
//! - **Single flight.** At most one fetch per source runs at a time, in its own task under one
//!   deadline for the whole upstream step (discovery and JWKS together). Whoever needs its
//!   result joins it, however long it has run; nobody starts a second fetch behind it.
//! - **Cooldown.** After a fetch ends, the next may start only a cooldown later, however many
//!   unknown `kid`s arrive: random `kid`s cannot turn a caller into a flood against the
//!   issuer, and a failed fetch is not retried at once (negative caching).
//! - **Freshness** follows the JWKS response's `Cache-Control: max-age`, bounded below by the
//!   cooldown and above by a day. A refetch sends the held keys' `ETag` (`If-None-Match`); a
//!   304 renews them without a body to read or keys to parse.
//! - **Stale keys.** While keys are past their freshness but within a bounded staleness, they
//!   keep serving: refreshed in the background ([`Refresh::Background`], so no caller ever
//!   waits on a refresh while usable keys are cached), or by the caller, falling back to them
//!   if the refresh fails ([`Refresh::Inline`]). An empty key set is never cached.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;

use crate::fetch::{FetchError, Fetcher};
use crate::jwks::KeySet;
use flight::{Inner, Next, wait};

mod flight;

/// Upper bound on a JWKS `max-age`.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Last good keys serve at most this long past their freshness while the JWKS cannot be had:
/// long enough to ride out an outage, short enough that a withdrawn key is not trusted for
/// ever by a caller cut off from its issuer.
pub const MAX_STALENESS: Duration = Duration::from_secs(6 * 3600);

/// What determines a set of keys: the cache is keyed by it, so changing any of them means
/// other keys, fetched at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySource {
    /// The issuer (its discovery document is `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Fetch keys here instead of discovery's `jwks_uri`.
    pub jwks_url: Option<String>,
    /// The algorithms keys are kept for.
    pub algorithms: Vec<Algorithm>,
}

/// Who waits for a refresh of stale keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Nobody: stale keys answer at once and the refresh runs behind
    /// (stale-while-revalidate).
    Background,
    /// The caller that found them stale (it gets them back if the refresh fails).
    Inline,
}

/// When discovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Before every JWKS fetch: a third-party issuer may move its keys.
    EveryFetch,
    /// Once, remembered until a JWKS fetch fails (then found again).
    Remembered,
}

/// How a cache behaves.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Freshness when the JWKS response has no `max-age`.
    pub default_ttl: Duration,
    /// Least time from the end of one fetch to the start of the next (also the least
    /// freshness).
    pub cooldown: Duration,
    /// Deadline of one whole fetch, discovery and JWKS together.
    pub deadline: Duration,
    /// Who waits for a refresh of stale keys.
    pub refresh: Refresh,
    /// When discovery runs.
    pub discovery: Discovery,
}

/// What a cache reports, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Keys were served from the cache without waiting for a fetch.
    Hit,
    /// A fetch ended.
    Fetched {
        /// Did it give keys (a new document or a 304)?
        ok: bool,
    },
}

/// Receives a cache's [`Event`]s.
pub type Observer = Arc<dyn Fn(Event) + Send + Sync>;

/// No usable keys, and when asking again can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("keys unavailable: {error}")]
pub struct Unavailable {
    /// Why.
    #[source]
    pub error: FetchError,
    /// Until the next fetch may start: a retry before then gets this same answer.
    pub retry_after: Duration,
}

/// The keys of one source, fetched on demand and cached.
pub struct KeyCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCache({:?})", self.inner.source)
    }
}

impl KeyCache {
    /// A cache of `source`'s keys, fetched with `fetcher`, reporting to `observer`.
    pub fn new(
        source: KeySource,
        fetcher: Fetcher,
        policy: CachePolicy,
        observer: Option<Observer>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                fetcher,
                policy,
                observer,
                current: ArcSwapOption::empty(),
                state: Mutex::default(),
            }),
        }
    }

    /// What the keys are for.
    pub fn source(&self) -> &KeySource {
        &self.inner.source
    }

    /// The keys to check a token against. `wanted` says whether a key set has the key the
    /// token names: cached keys that are fresh and wanted answer at once (no lock, no
    /// fetch); otherwise a fetch is joined or started if the cooldown allows. The result may
    /// still lack the key (the caller then refuses the token).
    pub async fn keys(&self, wanted: impl Fn(&KeySet) -> bool) -> Result<Arc<KeySet>, Unavailable> {
        let inner = &self.inner;
        let now = Instant::now();
        if let Some(c) = inner.current.load_full()
            && wanted(&c.keys)
        {
            if c.is_fresh(now) {
                inner.notify(Event::Hit);
                return Ok(c.keys.clone());
            }
            if inner.policy.refresh == Refresh::Background && c.is_usable(now) {
                // Joining a running refresh or starting one, without waiting for it.
                drop(inner.next(&wanted));
                inner.notify(Event::Hit);
                return Ok(c.keys.clone());
            }
        }
        let error = match inner.next(&wanted) {
            Next::Use(keys) => return Ok(keys),
            Next::Join(flight) => match wait(flight).await {
                Ok(fresh) => return Ok(fresh.keys.clone()),
                Err(e) => Some(e),
            },
            Next::Cooling => None,
        };
        // The fetch failed or may not start yet: the last good keys serve while usable.
        match inner.current.load_full() {
            Some(c) if c.is_usable(Instant::now()) => Ok(c.keys.clone()),
            _ => Err(inner.unavailable(error)),
        }
    }
}

#[cfg(test)]
mod tests;
