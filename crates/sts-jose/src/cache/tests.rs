//! The cache against a counting server. Timing is only ever asserted as a generous bound or
//! through counts.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::sign::SigningKey;
use crate::test_server::{Route, TestServer};

const DISCOVERY: &str = "/.well-known/openid-configuration";

struct Fixture {
    server: TestServer,
    key: SigningKey,
}

impl Fixture {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let (key, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let discovery = json!({"issuer": server.url, "jwks_uri": format!("{}/jwks", server.url)});
        server.route(DISCOVERY, Route::json(&discovery));
        server.route("/jwks", Route::json(&json!({"keys": [key.jwk()]})));
        Self { server, key }
    }

    fn cache(&self, policy: CachePolicy) -> Arc<KeyCache> {
        let source = KeySource {
            issuer: self.server.url.clone(),
            jwks_url: None,
            algorithms: vec![Algorithm::ES256],
        };
        let fetcher = Fetcher::new(Duration::from_secs(10), "test").unwrap();
        Arc::new(KeyCache::new(source, fetcher, policy, None))
    }

    /// Keys that hold the fixture's key.
    async fn keys(&self, cache: &KeyCache) -> Result<Arc<KeySet>, Unavailable> {
        let kid = self.key.kid().to_owned();
        cache
            .keys(move |set| set.has(Algorithm::ES256, Some(&kid)))
            .await
    }

    fn jwks_hits(&self) -> usize {
        self.server.hits("/jwks")
    }

    /// Waits (up to a generous bound) until the JWKS was requested `n` times.
    async fn until_jwks_hits(&self, n: usize) {
        let start = Instant::now();
        while self.jwks_hits() < n && start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.jwks_hits(), n);
    }
}

fn policy(cooldown_ms: u64, refresh: Refresh, discovery: Discovery) -> CachePolicy {
    CachePolicy {
        default_ttl: Duration::from_secs(300),
        cooldown: Duration::from_millis(cooldown_ms),
        deadline: Duration::from_secs(5),
        refresh,
        discovery,
    }
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let f = Fixture::start().await;
    let cache = f.cache(policy(0, Refresh::Background, Discovery::EveryFetch));
    let all = (0..20).map(|_| f.keys(&cache));
    for result in futures_util::future::join_all(all).await {
        assert!(result.unwrap().has(Algorithm::ES256, Some(f.key.kid())));
    }
    assert_eq!((f.server.hits(DISCOVERY), f.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn waiters_join_a_fetch_however_long_it_has_run() {
    let f = Fixture::start().await;
    f.server
        .edit("/jwks", |r| r.delay = Duration::from_millis(600));
    // The fetch outlives the cooldown many times over; later callers still join it.
    let cache = f.cache(policy(50, Refresh::Background, Discovery::EveryFetch));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6u64 {
        let (cache, kid) = (cache.clone(), f.key.kid().to_owned());
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(80 * i)).await;
            cache
                .keys(move |s| s.has(Algorithm::ES256, Some(&kid)))
                .await
                .map(|_| ())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(f.jwks_hits(), 1, "one fetch for six waiters");
}

#[tokio::test]
async fn one_deadline_covers_discovery_and_the_jwks() {
    let f = Fixture::start().await;
    f.server
        .edit(DISCOVERY, |r| r.delay = Duration::from_millis(400));
    f.server
        .edit("/jwks", |r| r.delay = Duration::from_millis(400));
    // Each request alone is well within the client's 10 s timeout; together they are not
    // within the deadline.
    let cache = f.cache(CachePolicy {
        deadline: Duration::from_millis(600),
        ..policy(1000, Refresh::Background, Discovery::EveryFetch)
    });
    let start = Instant::now();
    let err = f.keys(&cache).await.unwrap_err();
    assert!(err.to_string().contains("no keys within"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn stale_keys_answer_at_once_while_the_refresh_runs_behind() {
    let f = Fixture::start().await;
    // `max-age=0` is raised to the cooldown: fresh for 200 ms.
    f.server
        .edit("/jwks", |r| r.cache_control = Some("max-age=0".into()));
    let cache = f.cache(CachePolicy {
        deadline: Duration::from_secs(3),
        ..policy(200, Refresh::Background, Discovery::Remembered)
    });
    f.keys(&cache).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The issuer now hangs longer than the deadline.
    f.server
        .edit("/jwks", |r| r.delay = Duration::from_secs(30));
    let start = Instant::now();
    for _ in 0..10 {
        f.keys(&cache).await.unwrap();
    }
    // Waiting on the refresh would have taken the 3 s deadline at least once.
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    f.until_jwks_hits(2).await;
    assert_eq!(f.server.hits(DISCOVERY), 1, "discovery remembered");
    // The refresh fails at its deadline; the stale keys go on serving.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    f.keys(&cache).await.unwrap();
}

#[tokio::test]
async fn retry_after_says_when_a_fetch_may_start_again() {
    let f = Fixture::start().await;
    f.server.edit("/jwks", |r| r.status = 500);
    let cooldown = Duration::from_millis(800);
    let cache = f.cache(policy(800, Refresh::Background, Discovery::EveryFetch));
    let first = f.keys(&cache).await.unwrap_err();
    assert!(
        first.retry_after <= cooldown && first.retry_after > cooldown / 2,
        "{first:?}"
    );
    // Within the cooldown: the same answer, no fetch, and a shorter wait.
    let second = f.keys(&cache).await.unwrap_err();
    assert_eq!(f.jwks_hits(), 1);
    assert!(second.retry_after <= first.retry_after);
    f.server.edit("/jwks", |r| r.status = 200);
    tokio::time::sleep(second.retry_after).await;
    f.keys(&cache).await.unwrap();
    assert_eq!(f.jwks_hits(), 2);
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_cooldown() {
    let f = Fixture::start().await;
    let cache = f.cache(policy(300, Refresh::Background, Discovery::EveryFetch));
    f.keys(&cache).await.unwrap();
    for _ in 0..5 {
        let keys = stranger(&cache).await.unwrap();
        assert!(!keys.has(Algorithm::ES256, Some("stranger")));
    }
    assert_eq!(f.jwks_hits(), 1, "within the cooldown");
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..5 {
        stranger(&cache).await.unwrap();
    }
    assert_eq!((f.server.hits(DISCOVERY), f.jwks_hits()), (2, 2));
    // The misses evicted nothing.
    f.keys(&cache).await.unwrap();
    assert_eq!(f.jwks_hits(), 2);
}

#[tokio::test]
async fn inline_refresh_revalidates_by_etag_and_falls_back_to_stale_keys() {
    let f = Fixture::start().await;
    f.server.edit("/jwks", |r| {
        r.cache_control = Some("no-store".into());
        r.etag = Some("\"v1\"".into());
    });
    let cache = f.cache(policy(100, Refresh::Inline, Discovery::Remembered));
    f.keys(&cache).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    f.keys(&cache).await.unwrap();
    assert_eq!(
        (f.jwks_hits(), f.server.not_modified()),
        (2, 1),
        "renewed by a 304"
    );
    // Down: the refresh fails and the stale keys answer, in the same call.
    f.server.edit("/jwks", |r| {
        r.status = 503;
        r.etag = None;
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    f.keys(&cache).await.unwrap();
    assert_eq!(f.jwks_hits(), 3);
    // A failed JWKS fetch forgets the discovered URL, so the next one looks again.
    assert_eq!(f.server.hits(DISCOVERY), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    f.keys(&cache).await.unwrap();
    assert_eq!(f.server.hits(DISCOVERY), 2);
}

#[tokio::test]
async fn a_cold_cache_that_cannot_fetch_is_unavailable_and_negative_cached() {
    let f = Fixture::start().await;
    f.server.route(
        DISCOVERY,
        Route::json(&json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/jwks", f.server.url)})),
    );
    let cache = f.cache(policy(1000, Refresh::Inline, Discovery::Remembered));
    assert!(f.keys(&cache).await.is_err());
    assert!(f.keys(&cache).await.is_err());
    assert_eq!((f.server.hits(DISCOVERY), f.jwks_hits()), (1, 0));
}

async fn stranger(cache: &KeyCache) -> Result<Arc<KeySet>, Unavailable> {
    cache
        .keys(|s| s.has(Algorithm::ES256, Some("stranger")))
        .await
}
