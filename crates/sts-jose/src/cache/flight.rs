//! One fetch of a source's keys at a time: started when the cooldown allows, joined by
//! whoever needs it, run to the end in its own task under one deadline.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::Value;
use tokio::sync::watch;

use super::{
    CachePolicy, Discovery, Event, KeySource, MAX_STALENESS, MAX_TTL, Observer, Unavailable,
};
use crate::discovery;
use crate::fetch::{FetchError, Fetcher};
use crate::jwks::KeySet;

pub(super) struct Inner {
    pub(super) source: KeySource,
    pub(super) fetcher: Fetcher,
    pub(super) policy: CachePolicy,
    pub(super) observer: Option<Observer>,
    pub(super) current: ArcSwapOption<Cached>,
    pub(super) state: Mutex<State>,
}

pub(super) type Outcome = Result<Arc<Cached>, FetchError>;

#[derive(Default)]
pub(super) struct State {
    /// The fetch in progress; it publishes its outcome once.
    flight: Option<watch::Receiver<Option<Outcome>>>,
    /// When the last fetch ended.
    last_end: Option<Instant>,
    last_error: Option<FetchError>,
    /// Discovery's answer, under [`Discovery::Remembered`].
    jwks_uri: Option<String>,
}

pub(super) struct Cached {
    pub(super) keys: Arc<KeySet>,
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
    pub(super) fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) < self.ttl
    }

    pub(super) fn is_usable(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) < self.ttl + MAX_STALENESS
    }
}

/// What a caller that needs a fetch does.
pub(super) enum Next {
    /// Wait for this fetch.
    Join(watch::Receiver<Option<Outcome>>),
    /// Use these keys (someone fetched them meanwhile).
    Use(Arc<KeySet>),
    /// No fetch may start yet.
    Cooling,
}

pub(super) async fn wait(mut flight: watch::Receiver<Option<Outcome>>) -> Outcome {
    match flight.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Err(FetchError::CoolingDown)),
        Err(_) => Err(FetchError::Invalid("the key fetch was abandoned".into())),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn notify(&self, event: Event) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }

    /// Joins the running fetch, or starts one if the cooldown has passed.
    pub(super) fn next(self: &Arc<Self>, wanted: &dyn Fn(&KeySet) -> bool) -> Next {
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

    pub(super) fn unavailable(&self, error: Option<FetchError>) -> Unavailable {
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
