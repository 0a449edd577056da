//! `spawn_app()` and the fake identity provider.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sts_broker::config::{Config, Kek};
use sts_broker::jose::{b64url, unix_now};
use sts_broker::startup::{Application, Options};

/// The bootstrap admin secret of test brokers.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The key-encryption key of test brokers (32 bytes, base64).
pub const KEK: &str = "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=";

/// The `aud` the test broker accepts for the fake issuer.
pub const AUDIENCE: &str = "sts-test";
pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

const RSA_PEM: &str = include_str!("../fixtures/idp_rsa_test_key.pem");

/// How the fake issuer misbehaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Serves discovery and JWKS.
    Normal,
    /// Answers every request with this status.
    Status(u16),
    /// Answers 200 with a body that is not JSON.
    Garbage,
    /// Answers every request with a redirect to this URL.
    Redirect(String),
    /// Serves discovery and JWKS, each this much later (a slow or, with a long delay, hung
    /// issuer). Requests are counted when they arrive.
    Delay(std::time::Duration),
}

/// A fake OIDC issuer: its own keys, discovery and JWKS, counting what it serves.
pub struct FakeIdp {
    pub url: String,
    pub discovery_hits: Arc<AtomicUsize>,
    pub jwks_hits: Arc<AtomicUsize>,
    state: web::Data<IdpState>,
    es_key: std::sync::RwLock<(String, EncodingKey)>,
    pub es_kid: String,
    rsa_key: EncodingKey,
    pub rsa_kid: String,
    pub rsa_public_n: Vec<u8>,
}

struct IdpState {
    issuer: String,
    /// Where the default discovery document says the keys are.
    jwks_uri: String,
    jwks: std::sync::RwLock<Value>,
    discovery: std::sync::RwLock<Option<Value>>,
    mode: std::sync::RwLock<Mode>,
    cache_control: std::sync::RwLock<Option<String>>,
    discovery_hits: Arc<AtomicUsize>,
    jwks_hits: Arc<AtomicUsize>,
}

/// A fresh ES256 key: its id, signing key and public JWK.
fn es256_key() -> (String, EncodingKey, Value) {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let kid = format!("es-{}", uuid::Uuid::new_v4().simple());
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65])});
    (kid, EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

impl FakeIdp {
    /// An issuer at the root of its origin, keys at `/jwks`.
    pub async fn start() -> Self {
        Self::start_shaped("", "/jwks").await
    }

    /// An issuer at `issuer_path` under its origin (`/_services/token`, `/acme-enterprise`),
    /// its discovery document under that path as OIDC Discovery says, and its keys at
    /// `jwks_path` (an absolute path on the same origin).
    pub async fn start_shaped(issuer_path: &str, jwks_path: &str) -> Self {
        let (es_kid, es_key, es_jwk) = es256_key();
        let rsa_der = pem_body(RSA_PEM);
        let rsa = RsaKeyPair::from_der(&rsa_der).unwrap();
        let n = rsa
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let e = rsa
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec();
        let rsa_kid = "rsa-1".to_string();
        let jwks = json!({"keys": [
            es_jwk,
            {"kty": "RSA", "kid": rsa_kid, "use": "sig", "alg": "RS256", "n": b64url(&n), "e": b64url(&e)},
        ]});
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let url = format!("{origin}{issuer_path}");
        let discovery_path = format!(
            "{}/.well-known/openid-configuration",
            issuer_path.trim_end_matches('/')
        );
        let jwks_path = jwks_path.to_owned();
        let discovery_hits = Arc::new(AtomicUsize::new(0));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new(IdpState {
            issuer: url.clone(),
            jwks_uri: format!("{origin}{jwks_path}"),
            jwks: std::sync::RwLock::new(jwks),
            discovery: std::sync::RwLock::new(None),
            mode: std::sync::RwLock::new(Mode::Normal),
            cache_control: std::sync::RwLock::new(None),
            discovery_hits: discovery_hits.clone(),
            jwks_hits: jwks_hits.clone(),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route(&discovery_path, web::get().to(discovery))
                .route(&jwks_path, web::get().to(jwks_route))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url,
            discovery_hits,
            jwks_hits,
            state,
            es_key: std::sync::RwLock::new((es_kid.clone(), es_key)),
            es_kid,
            rsa_key: EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
            rsa_kid,
            rsa_public_n: n,
        }
    }

    /// Replaces the published JWKS.
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.write().unwrap() = jwks;
    }

    /// The published JWKS.
    pub fn jwks(&self) -> Value {
        self.state.jwks.read().unwrap().clone()
    }

    /// Serves this discovery document instead of the correct one.
    pub fn set_discovery(&self, doc: Value) {
        *self.state.discovery.write().unwrap() = Some(doc);
    }

    /// Changes how the issuer answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.write().unwrap() = mode;
    }

    /// Sends this `Cache-Control` with the JWKS.
    pub fn set_cache_control(&self, value: &str) {
        *self.state.cache_control.write().unwrap() = Some(value.to_owned());
    }

    /// Rotates the ES256 key: a new key signs from now on, published beside the old ones.
    /// Returns the new kid.
    pub fn rotate(&self) -> String {
        let (kid, key, jwk) = es256_key();
        let mut jwks = self.jwks();
        jwks["keys"].as_array_mut().unwrap().insert(0, jwk);
        self.set_jwks(jwks);
        *self.es_key.write().unwrap() = (kid.clone(), key);
        kid
    }

    /// Claims like a GitHub Actions token for `acme/api` on main.
    pub fn claims(&self) -> Value {
        let now = unix_now();
        json!({
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "repo:acme/api:ref:refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": uuid::Uuid::new_v4().to_string(),
            "repository": "acme/api",
            "repository_id": "1001",
            "repository_owner": "acme",
            "repository_owner_id": "2001",
            "ref": "refs/heads/main",
            "workflow": "deploy",
            "run_attempt": "1",
            "groups": ["dev", "ops"],
        })
    }

    /// `claims()` with some members replaced (`null` removes one).
    pub fn claims_with(&self, changes: Value) -> Value {
        let mut claims = self.claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    /// An ES256 token over `claims`, signed with the current key.
    pub fn token(&self, claims: &Value) -> String {
        let key = self.es_key.read().unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.0.clone());
        jsonwebtoken::encode(&header, claims, &key.1).unwrap()
    }

    /// An ES256 token with a chosen header (the current key still signs honestly).
    pub fn token_with_header(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.es_key.read().unwrap().1).unwrap()
    }

    /// An RS256 token over `claims`.
    pub fn token_rs256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.rsa_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.rsa_key).unwrap()
    }

    /// Discovery plus JWKS requests served so far.
    pub fn fetches(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst) + self.jwks_hits.load(Ordering::SeqCst)
    }
}

/// Misbehaviour shared by both routes, if any.
fn misbehave(state: &IdpState) -> Option<HttpResponse> {
    match state.mode.read().unwrap().clone() {
        Mode::Normal | Mode::Delay(_) => None,
        Mode::Status(code) => {
            Some(HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).finish())
        }
        Mode::Garbage => Some(
            HttpResponse::Ok()
                .content_type("application/json")
                .body("<html>not json"),
        ),
        Mode::Redirect(to) => Some(
            HttpResponse::Found()
                .insert_header(("location", to))
                .finish(),
        ),
    }
}

/// Waits as `Mode::Delay` says.
async fn delay(state: &IdpState) {
    let mode = state.mode.read().unwrap().clone();
    if let Mode::Delay(d) = mode {
        tokio::time::sleep(d).await;
    }
}

async fn discovery(state: web::Data<IdpState>) -> HttpResponse {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    delay(&state).await;
    if let Some(response) = misbehave(&state) {
        return response;
    }
    let doc = state.discovery.read().unwrap().clone();
    HttpResponse::Ok()
        .json(doc.unwrap_or_else(|| json!({"issuer": state.issuer, "jwks_uri": state.jwks_uri})))
}

async fn jwks_route(state: web::Data<IdpState>) -> HttpResponse {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    delay(&state).await;
    if let Some(response) = misbehave(&state) {
        return response;
    }
    let mut response = HttpResponse::Ok();
    if let Some(cc) = state.cache_control.read().unwrap().clone() {
        response.insert_header(("cache-control", cc));
    }
    response.json(&*state.jwks.read().unwrap())
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// The policies every test broker starts with; `{IDP}` is the fake issuer's URL.
pub const POLICIES: &str = r#"
kind: Issuer
name: fake
url: "{IDP}"
audiences: [sts-test]
algorithms: [ES256, RS256]
---
kind: TrustPolicy
name: api-deploy
issuer: fake
subject: repo:acme/api:ref:refs/heads/main
claims:
  repository_id: "1001"
  workflow: {regex: "deploy|release"}
  run_attempt: {one_of: ["1", "2"]}
grant:
  audience: [https://deploy.internal]
  scopes: [deploy:write, artifacts:read]
  ttl: 10m
  subject: "{repository}@{ref}"
  claims: {repository: "{repository}", groups: "{groups}"}
---
kind: TrustPolicy
name: branches-read
issuer: fake
subject: {glob: "repo:acme/*:ref:refs/heads/*"}
grant:
  audience: [https://artifacts.internal, https://logs.internal]
  scopes: [artifacts:read]
"#;

/// A running broker and its fake issuer.
pub struct TestApp {
    pub address: String,
    pub idp: FakeIdp,
    pub client: reqwest::Client,
    /// What it was started with (`restart` starts another broker with the same).
    pub config: Config,
    /// Holds the policies folder and the SQLite file.
    pub _dir: tempfile::TempDir,
}

/// Starts a broker on a random port with [`POLICIES`] and a fresh SQLite database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a hook to change the configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_full(POLICIES, tweak).await
}

/// A broker with these policies (`{IDP}` is replaced by the fake issuer's URL).
pub async fn spawn_app_full(policy_text: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_for(FakeIdp::start().await, policy_text, tweak).await
}

/// A broker with these policies, whose fake issuer is `idp` (`{IDP}` is its URL).
pub async fn spawn_app_for(
    idp: FakeIdp,
    policy_text: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("test.yaml"),
        policy_text.replace("{IDP}", &idp.url),
    )
    .unwrap();
    let mut config = test_config(&dir.path().join("broker.db"), &policies);
    tweak(&mut config);
    let app = Application::build(config.clone(), Options::default())
        .await
        .expect("broker starts");
    // Where it listens, which is not its issuer URL when a test sets one (replicas share one).
    let scheme = if config.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let address = format!("{scheme}://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        idp,
        client: reqwest::Client::new(),
        config,
        _dir: dir,
    }
}

/// Like [`spawn_app_with`], on the database at `database_url`.
pub async fn spawn_app_on(database_url: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|c| {
        c.database_url = sts_broker::config::Secret::new(database_url);
        tweak(c);
    })
    .await
}

/// The configuration tests start from.
pub fn test_config(db_path: &std::path::Path, policies: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: sts_broker::config::Secret::new(format!("sqlite://{}", db_path.display())),
        policies_dir: Some(policies.to_path_buf()),
        allow_insecure_loopback_issuers: true,
        admin_token: Some(sts_broker::config::Secret::new(ADMIN_TOKEN)),
        key_encryption_key: Some(Kek::parse(&sts_broker::config::Secret::new(KEK)).unwrap()),
        ..Config::default()
    }
}

impl TestApp {
    /// `POST /token` with these form parameters.
    pub async fn post_token(&self, params: &[(&str, &str)]) -> reqwest::Response {
        let body = form(params);
        self.client
            .post(format!("{}/token", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A standard exchange of `token`, with optional audience and scope.
    pub async fn exchange(
        &self,
        token: &str,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut params = vec![
            ("grant_type", GRANT),
            ("subject_token", token),
            ("subject_token_type", ID_TOKEN),
        ];
        if let Some(a) = audience {
            params.push(("audience", a));
        }
        if let Some(s) = scope {
            params.push(("scope", s));
        }
        self.post_token(&params).await
    }

    /// Starts a second broker with the same configuration (database, policies); returns its
    /// address.
    pub async fn restart(&self) -> String {
        let app = Application::build(self.config.clone(), Options::default())
            .await
            .unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        address
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .unwrap()
    }

    /// The `/metrics` page, read with the admin token.
    pub async fn metrics_page(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// An admin API request with the bootstrap token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/admin/v1{}", self.address, path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// The audit records of one request id, as the admin API shows them.
    pub async fn audit_records(&self, request_id: &str) -> Vec<Value> {
        let response = self
            .admin(reqwest::Method::GET, &format!("/audit/{request_id}"))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            return Vec::new();
        }
        assert_eq!(response.status(), 200, "audit lookup of {request_id}");
        let body: Value = response.json().await.unwrap();
        body["events"].as_array().unwrap().clone()
    }

    /// Audit records for one request id: (decision, reason, policy).
    pub async fn audit(&self, request_id: &str) -> Vec<(Option<String>, String, Option<String>)> {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        self.audit_records(request_id)
            .await
            .iter()
            .map(|r| {
                (
                    text(&r["decision"]),
                    text(&r["reason"]).unwrap(),
                    text(&r["policy"]),
                )
            })
            .collect()
    }
}

/// Polls `done` until it holds, for at most a generous ten seconds; returns whether it did.
/// For what happens behind an answer (a background refresh): assert on the outcome, never
/// on how soon it came.
pub async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !done() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    true
}

pub fn form(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Asserts an RFC 6749 error and returns the body.
pub async fn expect_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let header_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body["request_id"], header_id.as_str());
    body
}

/// The claims of a JWT, unverified (signatures are checked where a test is about them).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A JWT's `jti`.
pub fn jti_of(token: &str) -> String {
    claims_of(token)["jti"].as_str().expect("a jti").to_owned()
}
