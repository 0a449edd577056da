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

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::sync::watch;

use crate::discovery;
use crate::fetch::{FetchError, Fetcher};
use crate::jwk::KeySet;

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

struct Inner {
    source: KeySource,
    fetcher: Fetcher,
    policy: CachePolicy,
    observer: Option<Observer>,
    current: ArcSwapOption<Cached>,
    state: Mutex<State>,
}

type Outcome = Result<Arc<Cached>, FetchError>;

#[derive(Default)]
struct State {
    /// The fetch in progress; it publishes its outcome once.
    flight: Option<watch::Receiver<Option<Outcome>>>,
    /// When the last fetch ended.
    last_end: Option<Instant>,
    last_error: Option<FetchError>,
    /// Discovery's answer, under [`Discovery::Remembered`].
    jwks_uri: Option<String>,
}

struct Cached {
    keys: Arc<KeySet>,
    /// Last fetched or revalidated.
    fetched_at: Instant,
    ttl: Duration,
    /// Where they came from; when the document itself was last read (a 200), its `max-age`
    /// and entity tag: what revalidation needs.
    jwks_uri: String,
    read_at: Instant,
    max_age: Option<Duration>,
    etag: Option<String>,
}

impl Cached {
    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) < self.ttl
    }

    fn is_usable(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) < self.ttl + MAX_STALENESS
    }
}

/// What a caller that needs a fetch does.
enum Next {
    /// Wait for this fetch.
    Join(watch::Receiver<Option<Outcome>>),
    /// Use these keys (someone fetched them meanwhile).
    Use(Arc<KeySet>),
    /// No fetch may start yet.
    Cooling,
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

async fn wait(mut flight: watch::Receiver<Option<Outcome>>) -> Outcome {
    match flight.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Err(FetchError::CoolingDown)),
        Err(_) => Err(FetchError::Invalid("the key fetch was abandoned".into())),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self, event: Event) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }

    /// Joins the running fetch, or starts one if the cooldown has passed.
    fn next(self: &Arc<Self>, wanted: &dyn Fn(&KeySet) -> bool) -> Next {
        let mut state = self.lock();
        // Keys stored by a fetch that ended while this caller waited for the lock.
        if let Some(c) = self.current.load_full()
            && c.is_fresh(Instant::now())
            && wanted(&c.keys)
        {
            return Next::Use(c.keys.clone());
        }
        if let Some(flight) = &state.flight {
            // A flight whose task died (a panic, a runtime shutting down) never answers.
            if flight.has_changed().is_ok() {
                return Next::Join(flight.clone());
            }
            state.flight = None;
        }
        if state
            .last_end
            .is_some_and(|end| end.elapsed() < self.policy.cooldown)
        {
            return Next::Cooling;
        }
        let (publish, flight) = watch::channel(None);
        state.flight = Some(flight.clone());
        let remembered = state.jwks_uri.clone();
        drop(state);
        tokio::spawn(self.clone().fly(publish, remembered));
        Next::Join(flight)
    }

    /// One fetch, to the end, whoever still waits for it.
    async fn fly(
        self: Arc<Self>,
        publish: watch::Sender<Option<Outcome>>,
        remembered: Option<String>,
    ) {
        let held = self.current.load_full();
        let deadline = self.policy.deadline;
        let outcome = tokio::time::timeout(deadline, self.fetch(held, remembered))
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Http {
                    url: self.source.issuer.clone(),
                    reason: format!("no keys within {deadline:?}"),
                })
            });
        if let Ok(fresh) = &outcome {
            self.current.store(Some(fresh.clone()));
        }
        {
            let mut state = self.lock();
            state.flight = None;
            state.last_end = Some(Instant::now());
            state.last_error = outcome.as_ref().err().cloned();
            state.jwks_uri = match (&outcome, self.policy.discovery) {
                (Ok(fresh), Discovery::Remembered) => Some(fresh.jwks_uri.clone()),
                _ => None,
            };
        }
        if let Err(e) = &outcome {
            tracing::warn!(issuer = %self.source.issuer, error = %e, "key refresh failed");
        }
        self.notify(Event::Fetched {
            ok: outcome.is_ok(),
        });
        publish.send_replace(Some(outcome));
    }

    async fn fetch(&self, held: Option<Arc<Cached>>, remembered: Option<String>) -> Outcome {
        let jwks_uri = match (&self.source.jwks_url, remembered) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url,
            (None, None) => discovery::jwks_uri(&self.fetcher, &self.source.issuer).await?,
        };
        // An entity tag means something only for the resource it came from. And a 304
        // renews keys without showing them, so renewals stop MAX_TTL after the document was
        // last read: keys that anyone able to answer for the issuer once served (with a
        // copied tag) are kept no longer than a full fetch would have kept them.
        let held = held.filter(|h| h.jwks_uri == jwks_uri);
        let etag = held
            .as_ref()
            .filter(|h| h.read_at.elapsed() < MAX_TTL)
            .and_then(|h| h.etag.as_deref());
        let response = self.fetcher.get_json(&jwks_uri, etag).await?;
        let now = Instant::now();
        let (keys, read_at, max_age, etag) = match (response.body, held) {
            (Some(doc), _) => {
                let keys = KeySet::from_jwks(&Value::Object(doc), &self.source.algorithms)
                    .map_err(|e| FetchError::Invalid(format!("{jwks_uri}: {e}")))?;
                (Arc::new(keys), now, response.max_age, response.etag)
            }
            // RFC 9111 §4.3.4: a 304 updates only the headers it carries.
            (None, Some(h)) => (
                h.keys.clone(),
                h.read_at,
                response.max_age.or(h.max_age),
                h.etag.clone(),
            ),
            (None, None) => return Err(FetchError::Invalid(format!("{jwks_uri}: unasked 304"))),
        };
        let cooldown = self.policy.cooldown;
        Ok(Arc::new(Cached {
            keys,
            fetched_at: now,
            ttl: max_age
                .unwrap_or(self.policy.default_ttl)
                .clamp(cooldown, MAX_TTL.max(cooldown)),
            jwks_uri,
            read_at,
            max_age,
            etag,
        }))
    }

    fn unavailable(&self, error: Option<FetchError>) -> Unavailable {
        let state = self.lock();
        let since = state.last_end.map_or(Duration::MAX, |end| end.elapsed());
        Unavailable {
            error: error
                .or_else(|| state.last_error.clone())
                .unwrap_or(FetchError::CoolingDown),
            retry_after: self.policy.cooldown.saturating_sub(since),
        }
    }
}

#[cfg(test)]
mod tests;
