//! The broker's keys, fetched on demand and cached.
//!
//! - Discovery runs once; its `jwks_uri` is kept (and forgotten only if the JWKS fetch fails,
//!   so a moved JWKS is found again).
//! - Freshness follows the JWKS response's `Cache-Control: max-age`, bounded below by the
//!   cooldown and above by a day.
//! - A token with an unknown `kid` (the broker rotated) refetches, but at most once per
//!   cooldown: random `kid`s cannot turn an API into a flood against the broker.
//! - Concurrent misses share one fetch: one lock, re-checked once taken.
//! - When a refetch fails the last good keys keep serving, up to a bounded staleness; a
//!   failed fetch is not retried within the cooldown either.
//! - A refetch sends the held keys' `ETag` (`If-None-Match`); a 304 renews them without a
//!   body to read or keys to parse.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Mutex;

use crate::error::FetchError;
use crate::fetch::{Fetcher, Jwks};
use crate::jwk::KeySet;

/// Upper bound on the broker's `max-age`.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Last good keys serve at most this long past their freshness while the broker's JWKS
/// cannot be fetched: long enough to ride out an outage, short enough that a key the broker
/// withdrew is not trusted for ever by an API cut off from it.
const MAX_STALENESS: Duration = Duration::from_secs(6 * 3600);

/// How often keys may be fetched, and how long they are fresh by default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachePolicy {
    /// Least time between two fetches (also the least freshness).
    pub cooldown: Duration,
    /// Freshness when the JWKS response has no `max-age`.
    pub default_ttl: Duration,
}

#[derive(Debug)]
struct Cached {
    keys: Arc<KeySet>,
    /// Last fetched or revalidated.
    fetched_at: Instant,
    ttl: Duration,
    /// Where the keys came from, when the document itself was last read (a 200), its
    /// `max-age` and its entity tag: what revalidation needs.
    jwks_uri: Url,
    read_at: Instant,
    max_age: Option<Duration>,
    etag: Option<String>,
}

impl Cached {
    fn is_fresh(&self) -> bool {
        self.fetched_at.elapsed() < self.ttl
    }

    fn is_usable(&self) -> bool {
        self.fetched_at.elapsed() < self.ttl + MAX_STALENESS
    }
}

/// Held while fetching.
#[derive(Debug, Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<Url>,
}

/// The key cache of one issuer.
#[derive(Debug)]
pub(crate) struct KeyCache {
    issuer: String,
    fetcher: Fetcher,
    policy: CachePolicy,
    current: RwLock<Option<Arc<Cached>>>,
    fetching: Mutex<FetchState>,
}

impl KeyCache {
    pub fn new(issuer: String, fetcher: Fetcher, policy: CachePolicy) -> Self {
        Self {
            issuer,
            fetcher,
            policy,
            current: RwLock::default(),
            fetching: Mutex::default(),
        }
    }

    /// The keys to check a token with `kid` against: the cached ones when they are fresh and
    /// know `kid`, otherwise whatever a refetch (if one is allowed now) gives. The result may
    /// still lack `kid`; the caller then refuses the token.
    pub async fn keys_for(&self, kid: &str) -> Result<Arc<KeySet>, FetchError> {
        // The hot path: no lock held across an await, no fetch.
        match self.load() {
            Some(c) if c.is_fresh() && c.keys.has_kid(kid) => Ok(c.keys.clone()),
            _ => self.refresh(kid).await,
        }
    }

    async fn refresh(&self, kid: &str) -> Result<Arc<KeySet>, FetchError> {
        let mut state = self.fetching.lock().await;
        // Another task may have fetched while this one waited for the lock.
        let current = self.load();
        if let Some(c) = &current
            && c.is_fresh()
            && c.keys.has_kid(kid)
        {
            return Ok(c.keys.clone());
        }
        let cooling = state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.policy.cooldown);
        if cooling {
            return current
                .filter(|c| c.is_usable())
                .map(|c| c.keys.clone())
                .ok_or(FetchError::CoolingDown);
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch(&mut state, current.as_deref()).await {
            Ok(fresh) => {
                let keys = fresh.keys.clone();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fresh));
                Ok(keys)
            }
            Err(e) => match current {
                Some(c) if c.is_usable() => Ok(c.keys.clone()),
                _ => Err(e),
            },
        }
    }

    async fn fetch(
        &self,
        state: &mut FetchState,
        held: Option<&Cached>,
    ) -> Result<Cached, FetchError> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => state
                .jwks_uri
                .insert(self.fetcher.discover(&self.issuer).await?)
                .clone(),
        };
        // An entity tag means something only for the resource it came from. And a 304
        // renews keys without showing them, so renewals stop MAX_TTL after the document was
        // last read: keys that anyone able to answer for the broker once served (with a
        // copied tag) are kept no longer than a full fetch would have kept them.
        let held = held.filter(|h| h.jwks_uri == jwks_uri);
        let etag = held
            .filter(|h| h.read_at.elapsed() < MAX_TTL)
            .and_then(|h| h.etag.as_deref());
        let now = Instant::now();
        let fetched = match self.fetcher.jwks(&jwks_uri, etag).await {
            Ok(Jwks::Document { doc, max_age, etag }) => KeySet::from_jwks(&doc)
                .map(|keys| (Arc::new(keys), now, max_age, etag))
                .map_err(|why| FetchError::Invalid(format!("{jwks_uri}: {why}"))),
            // RFC 9111 §4.3.4: a 304 updates only the headers it carries.
            Ok(Jwks::NotModified { max_age }) => match held {
                Some(h) => Ok((
                    h.keys.clone(),
                    h.read_at,
                    max_age.or(h.max_age),
                    h.etag.clone(),
                )),
                None => Err(FetchError::Invalid(format!("{jwks_uri}: unasked 304"))),
            },
            Err(e) => Err(e),
        };
        let (keys, read_at, max_age, etag) = fetched.inspect_err(|_| state.jwks_uri = None)?;
        let cooldown = self.policy.cooldown;
        Ok(Cached {
            keys,
            fetched_at: now,
            ttl: max_age
                .unwrap_or(self.policy.default_ttl)
                .clamp(cooldown, MAX_TTL.max(cooldown)),
            jwks_uri,
            read_at,
            max_age,
            etag,
        })
    }

    fn load(&self) -> Option<Arc<Cached>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
