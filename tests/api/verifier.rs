//! `sts_verifier` against real brokers (one per signing algorithm), its key cache against a
//! counting fake broker, and its actix extractor inside a real actix server.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use sts_broker::config::SigningAlgorithm;
use sts_broker::jose::unix_now;
use sts_broker::mint::SigningKey;
use sts_verifier::actix::BrokerToken;
use sts_verifier::{InvalidToken, Verifier, VerifyError};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const DEPLOY: &str = "https://deploy.internal";

fn verifier_for(issuer: &str) -> Verifier {
    Verifier::builder(issuer)
        .audience(DEPLOY)
        .required_scopes(["deploy:write"])
        .build()
        .unwrap()
}

/// Exchanges a fresh inbound token; returns the broker's access token.
async fn broker_token(app: &TestApp, audience: Option<&str>, scope: Option<&str>) -> String {
    let inbound = app.idp.token(&app.idp.claims());
    let response = app.exchange(&inbound, audience, scope).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

fn invalid(result: Result<sts_verifier::Claims, VerifyError>) -> InvalidToken {
    match result {
        Err(VerifyError::InvalidToken(reason)) => reason,
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[tokio::test]
async fn tokens_of_every_signing_algorithm_verify() {
    for alg in [
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
        SigningAlgorithm::EdDSA,
    ] {
        let app = spawn_app_with(|c| c.signing_algorithm = alg).await;
        let token = broker_token(&app, None, None).await;
        let claims = verifier_for(&app.address)
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", alg.as_str()));
        assert_eq!(claims.iss, app.address);
        assert_eq!(claims.sub, "fake:acme/api@refs/heads/main");
        assert_eq!(claims.aud, [DEPLOY]);
        assert_eq!(claims.scopes, ["deploy:write", "artifacts:read"]);
        assert_eq!(claims.client_id.as_deref(), Some("api-deploy"));
        assert_eq!(claims.exp - claims.iat.unwrap(), 600);
        assert!(claims.jti.as_deref().is_some_and(|j| !j.is_empty()));
        let act = claims.act.as_ref().unwrap();
        assert_eq!(act.iss.as_deref(), Some(app.idp.url.as_str()));
        assert_eq!(act.sub, "repo:acme/api:ref:refs/heads/main");
        assert_eq!(claims.raw["repository"], "acme/api");
    }
}

#[tokio::test]
async fn other_audiences_tampering_and_missing_scopes_are_refused() {
    let app = spawn_app().await;
    let verifier = verifier_for(&app.address);

    let for_logs = broker_token(&app, Some("https://logs.internal"), None).await;
    assert_eq!(
        invalid(verifier.verify(&for_logs).await),
        InvalidToken::Audience
    );

    // The payload of the logs token under the signature of a deploy token.
    let good = broker_token(&app, None, None).await;
    let logs_payload = for_logs.split('.').nth(1).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let spliced = format!("{}.{logs_payload}.{}", parts[0], parts[2]);
    assert_eq!(
        invalid(verifier.verify(&spliced).await),
        InvalidToken::Signature
    );

    let read_only = broker_token(&app, Some(DEPLOY), Some("artifacts:read")).await;
    match verifier.verify(&read_only).await {
        Err(VerifyError::InsufficientScope { missing, .. }) => {
            assert_eq!(missing, ["deploy:write"])
        }
        other => panic!("expected insufficient_scope, got {other:?}"),
    }

    let elsewhere = Verifier::builder(format!("{}/", app.address))
        .audience(DEPLOY)
        .build()
        .unwrap();
    assert!(
        matches!(
            elsewhere.verify(&good).await,
            Err(VerifyError::KeysUnavailable(_))
        ),
        "discovery names the issuer without the slash, so it is not this issuer"
    );
}

/// A broker stand-in: discovery and a JWKS of chosen keys, counting requests.
struct FakeBroker {
    url: String,
    state: web::Data<FakeState>,
}

struct FakeState {
    discovery: RwLock<Value>,
    jwks: RwLock<Value>,
    cache_control: RwLock<String>,
    down: AtomicBool,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    /// JWKS requests answered 304 (a subset of `jwks_hits`).
    not_modified: AtomicUsize,
    /// Answer 304s without `Cache-Control` (as some servers do).
    bare_304: AtomicBool,
}

impl FakeBroker {
    async fn start(cache_control: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = web::Data::new(FakeState {
            discovery: RwLock::new(json!({"issuer": url, "jwks_uri": format!("{url}/jwks")})),
            jwks: RwLock::new(json!({"keys": []})),
            cache_control: RwLock::new(cache_control.to_owned()),
            down: AtomicBool::new(false),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            bare_304: AtomicBool::new(false),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(fake_discovery),
                )
                .route("/jwks", web::get().to(fake_jwks))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, state }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.state.jwks.write().unwrap() =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    fn token(&self, key: &SigningKey) -> String {
        let now = unix_now();
        let claims = json!({"iss": self.url, "sub": "w", "aud": DEPLOY, "exp": now + 300,
            "iat": now, "scope": "deploy:write"});
        key.sign_jwt(&claims, "at+jwt").unwrap()
    }

    fn hits(&self) -> (usize, usize) {
        (
            self.state.discovery_hits.load(Ordering::SeqCst),
            self.state.jwks_hits.load(Ordering::SeqCst),
        )
    }
}

async fn fake_discovery(state: web::Data<FakeState>) -> HttpResponse {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().json(&*state.discovery.read().unwrap())
}

async fn fake_jwks(req: HttpRequest, state: web::Data<FakeState>) -> HttpResponse {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let body = state.jwks.read().unwrap().to_string();
    let etag = format!("\"{:016x}\"", {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        h.finish()
    });
    let cache_control = state.cache_control.read().unwrap().clone();
    if req
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        state.not_modified.fetch_add(1, Ordering::SeqCst);
        let mut not_modified = HttpResponse::NotModified();
        if !state.bare_304.load(Ordering::SeqCst) {
            not_modified.insert_header(("cache-control", cache_control));
        }
        return not_modified.insert_header(("etag", etag)).finish();
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", cache_control))
        .insert_header(("etag", etag))
        .content_type("application/json")
        .body(body)
}

fn new_key() -> SigningKey {
    SigningKey::generate(SigningAlgorithm::ES256).unwrap().0
}

fn cached_verifier(issuer: &str, cooldown: Duration) -> Arc<Verifier> {
    Arc::new(
        Verifier::builder(issuer)
            .audience(DEPLOY)
            .refetch_cooldown(cooldown)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch_and_max_age_is_honoured() {
    let fake = FakeBroker::start("public, max-age=3600").await;
    let key = new_key();
    fake.publish(&[&key]);
    // No cooldown: only the shared fetch keeps waiting tasks from fetching again.
    let verifier = cached_verifier(&fake.url, Duration::ZERO);
    let token = fake.token(&key);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (verifier, token) = (verifier.clone(), token.clone());
        tasks.spawn(async move { verifier.verify(&token).await.map(|_| ()) });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(fake.hits(), (1, 1), "one discovery and one JWKS fetch");

    // Within max-age: still no fetch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(fake.hits(), (1, 1));
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_cooldown() {
    let fake = FakeBroker::start("public, max-age=3600").await;
    let (old, new) = (new_key(), new_key());
    fake.publish(&[&old]);
    let cooldown = Duration::from_millis(300);
    let verifier = cached_verifier(&fake.url, cooldown);
    verifier.verify(&fake.token(&old)).await.unwrap();
    assert_eq!(fake.hits(), (1, 1));

    // The broker rotates; within the cooldown the new kid is refused without a fetch.
    fake.publish(&[&new, &old]);
    let rotated = fake.token(&new);
    for _ in 0..5 {
        assert_eq!(
            invalid(verifier.verify(&rotated).await),
            InvalidToken::UnknownKey
        );
    }
    assert_eq!(fake.hits(), (1, 1), "no fetch within the cooldown");

    // After it, one refetch finds the new key; discovery is not repeated.
    tokio::time::sleep(cooldown).await;
    verifier.verify(&rotated).await.unwrap();
    verifier.verify(&fake.token(&old)).await.unwrap();
    assert_eq!(fake.hits(), (1, 2));

    // Random kids after that cost one fetch per cooldown at most.
    let strangers: Vec<String> = (0..5).map(|_| fake.token(&new_key())).collect();
    tokio::time::sleep(cooldown).await;
    for token in &strangers {
        assert_eq!(
            invalid(verifier.verify(token).await),
            InvalidToken::UnknownKey
        );
    }
    assert_eq!(fake.hits(), (1, 3));
}

#[tokio::test]
async fn expired_keys_are_revalidated_by_etag() {
    // `no-store`: keys are fresh only for the cooldown, so every later call revalidates.
    let fake = FakeBroker::start("no-store").await;
    let (old, new) = (new_key(), new_key());
    fake.publish(&[&old]);
    let cooldown = Duration::from_millis(100);
    let verifier = cached_verifier(&fake.url, cooldown);
    verifier.verify(&fake.token(&old)).await.unwrap();
    let not_modified = || fake.state.not_modified.load(Ordering::SeqCst);
    assert_eq!((fake.hits(), not_modified()), ((1, 1), 0));

    // Unchanged keys: a 304 renews them, and they still verify.
    tokio::time::sleep(cooldown * 2).await;
    verifier.verify(&fake.token(&old)).await.unwrap();
    assert_eq!((fake.hits(), not_modified()), ((1, 2), 1));

    // Changed keys: the tag no longer matches and the new document is read.
    fake.publish(&[&new]);
    tokio::time::sleep(cooldown * 2).await;
    verifier.verify(&fake.token(&new)).await.unwrap();
    assert_eq!((fake.hits(), not_modified()), ((1, 3), 1));
    assert_eq!(
        invalid(verifier.verify(&fake.token(&old)).await),
        InvalidToken::UnknownKey,
        "the withdrawn key is gone"
    );
}

/// RFC 9111 §4.3.4: a 304 updates only the headers it carries, so one without
/// `Cache-Control` keeps the document's `max-age` rather than falling back to the default.
#[tokio::test]
async fn a_bare_304_keeps_the_documents_max_age() {
    let fake = FakeBroker::start("max-age=1").await;
    fake.state.bare_304.store(true, Ordering::SeqCst);
    let key = new_key();
    fake.publish(&[&key]);
    let verifier = Arc::new(
        Verifier::builder(&fake.url)
            .audience(DEPLOY)
            .refetch_cooldown(Duration::ZERO)
            .default_cache_ttl(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    let token = fake.token(&key);
    verifier.verify(&token).await.unwrap();
    let second = Duration::from_millis(1100);
    tokio::time::sleep(second).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(fake.state.not_modified.load(Ordering::SeqCst), 1);
    // Still fresh for one second only, not for the default hour.
    tokio::time::sleep(second).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(fake.state.not_modified.load(Ordering::SeqCst), 2);
    assert_eq!(fake.hits(), (1, 3));
}

#[tokio::test]
async fn stale_keys_serve_while_the_jwks_is_down() {
    // `no-store`: keys are fresh only for the cooldown, so every later call refetches.
    let fake = FakeBroker::start("no-store").await;
    let key = new_key();
    fake.publish(&[&key]);
    let cooldown = Duration::from_millis(100);
    let verifier = cached_verifier(&fake.url, cooldown);
    let token = fake.token(&key);
    verifier.verify(&token).await.unwrap();

    fake.state.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(cooldown * 2).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        fake.hits().1,
        2,
        "the stale keys were refreshed, and that failed"
    );

    let cold = cached_verifier(&fake.url, cooldown);
    assert!(matches!(
        cold.verify(&token).await,
        Err(VerifyError::KeysUnavailable(_))
    ));
    // The same answer within the cooldown, without another fetch.
    let hits = fake.hits();
    assert!(matches!(
        cold.verify(&token).await,
        Err(VerifyError::KeysUnavailable(_))
    ));
    assert_eq!(fake.hits(), hits);
}

#[tokio::test]
async fn discovery_must_be_about_this_issuer() {
    let fake = FakeBroker::start("max-age=60").await;
    let key = new_key();
    fake.publish(&[&key]);
    let token = fake.token(&key);
    // Another host that would serve the right keys.
    let elsewhere = FakeBroker::start("max-age=60").await;
    elsewhere.publish(&[&key]);
    let documents = [
        json!({"issuer": "https://evil.example.com", "jwks_uri": format!("{}/jwks", fake.url)}),
        json!({"issuer": fake.url, "jwks_uri": format!("{}/jwks", elsewhere.url)}),
        json!({"issuer": fake.url}),
    ];
    for doc in documents {
        *fake.state.discovery.write().unwrap() = doc.clone();
        let verifier = cached_verifier(&fake.url, Duration::from_millis(10));
        let result = verifier.verify(&token).await;
        assert!(
            matches!(result, Err(VerifyError::KeysUnavailable(_))),
            "{doc}: {result:?}"
        );
    }
    assert_eq!(
        (fake.hits().1, elsewhere.hits().1),
        (0, 0),
        "no JWKS was fetched"
    );
}

async fn deploy(token: BrokerToken) -> HttpResponse {
    HttpResponse::Ok().json(json!({"sub": token.sub}))
}

async fn admin(token: BrokerToken) -> Result<HttpResponse, sts_verifier::actix::Rejection> {
    token.require_scopes(["admin:write"])?;
    Ok(HttpResponse::Ok().finish())
}

#[tokio::test]
async fn the_actix_extractor_answers_rfc_6750() {
    let app = spawn_app().await;
    let verifier = web::Data::new(verifier_for(&app.address));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .route("/deploy", web::get().to(deploy))
            .route("/admin", web::get().to(admin))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    let call = |path: &str, token: Option<&str>| {
        let mut request = app.client.get(format!("{api}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let challenge =
        |r: &reqwest::Response| r.headers()["www-authenticate"].to_str().unwrap().to_owned();

    let response = call("/deploy", None).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="https://deploy.internal""#
    );

    let response = call("/deploy", Some("not.a.token")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).contains(r#"error="invalid_token""#));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );

    let read_only = broker_token(&app, Some(DEPLOY), Some("artifacts:read")).await;
    let response = call("/deploy", Some(&read_only)).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="https://deploy.internal", error="insufficient_scope", scope="deploy:write""#
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");

    let good = broker_token(&app, None, None).await;
    let response = call("/deploy", Some(&good)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sub"], "fake:acme/api@refs/heads/main");

    let response = call("/admin", Some(&good)).await.unwrap();
    assert_eq!(response.status(), 403, "a per-route scope the token lacks");
    assert!(challenge(&response).contains(r#"scope="admin:write""#));
}
