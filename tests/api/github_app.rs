//! GitHub App tokens narrowed by policy, against a fake GitHub API: both request shapes, the
//! narrowing of repositories and permissions, GitHub's refusals, failures and rate limits,
//! the audit record, and documents that are refused.

mod fake;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error, spawn_app_full};
use fake::{FakeGitHub, Installation, Mode};

const APP_ID: u64 = 123456;
/// The app's private key: PKCS#1 PEM, as GitHub hands it out.
const KEY_PEM: &str = include_str!("../fixtures/idp_rsa_test_key.pem");

const POLICIES: &str = r#"
kind: Issuer
name: fake
url: "{IDP}"
audiences: [sts-test]
algorithms: [ES256, RS256]
---
kind: GitHubApp
name: acme-bot
app_id: 123456
private_key_file: "{KEY}"
api_url: "{GITHUB}"
---
kind: TrustPolicy
name: release-bot
issuer: fake
subject: repo:acme/api:ref:refs/heads/main
claims: {repository_owner_id: "2001"}
grant:
  github:
    app: acme-bot
    owner: acme
    repositories: [api, homebrew-tap]
    permissions: {contents: write, pull_requests: read}
---
kind: TrustPolicy
name: elsewhere
issuer: fake
subject: repo:acme/api:ref:refs/heads/main
claims: {workflow: elsewhere}
grant:
  github: {app: acme-bot, owner: nobody, permissions: {contents: read}}
---
kind: TrustPolicy
name: personal
issuer: fake
subject: repo:acme/api:ref:refs/heads/main
claims: {workflow: personal}
grant:
  github: {app: acme-bot, owner: octocat, permissions: {issues: write}}
"#;

/// A broker with [`POLICIES`] and the fake GitHub it talks to.
struct GitHubTest {
    app: TestApp,
    github: FakeGitHub,
    _key_dir: tempfile::TempDir,
}

async fn start() -> GitHubTest {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut sts_broker::config::Config)) -> GitHubTest {
    let der = pem_body(KEY_PEM);
    let pair = RsaKeyPair::from_der(&der).unwrap();
    let n = pair
        .public_key()
        .modulus()
        .big_endian_without_leading_zero()
        .to_vec();
    let e = pair
        .public_key()
        .exponent()
        .big_endian_without_leading_zero()
        .to_vec();
    let github = FakeGitHub::start(
        APP_ID,
        &n,
        &e,
        vec![
            (
                "acme",
                Installation {
                    id: 42,
                    kind: "orgs",
                    repositories: vec!["api", "homebrew-tap", "private"],
                    permissions: BTreeMap::from([
                        ("contents", "write"),
                        ("pull_requests", "write"),
                        ("metadata", "read"),
                    ]),
                },
            ),
            (
                "octocat",
                Installation {
                    id: 43,
                    kind: "users",
                    repositories: vec!["dotfiles"],
                    permissions: BTreeMap::from([("contents", "read")]),
                },
            ),
        ],
    )
    .await;
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("acme-bot.pem");
    std::fs::write(&key_file, KEY_PEM).unwrap();
    let text = POLICIES
        .replace("{KEY}", key_file.to_str().unwrap())
        .replace("{GITHUB}", &github.url);
    let app = spawn_app_full(&text, tweak).await;
    GitHubTest {
        app,
        github,
        _key_dir: key_dir,
    }
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

impl GitHubTest {
    /// A GitHub Actions token of acme/api on main, with `workflow` as given.
    fn subject(&self, workflow: &str) -> String {
        let idp = &self.app.idp;
        idp.token(&idp.claims_with(json!({"workflow": workflow})))
    }

    async fn exchange(
        &self,
        workflow: &str,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> reqwest::Response {
        self.app
            .exchange(&self.subject(workflow), audience, scope)
            .await
    }
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn sha256_hex(text: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_token_narrowed_to_the_repository_asked_for() {
    let t = start().await;
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(t.github.tokens(), [token]);
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "contents:write pull_requests:read");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");
    assert_eq!(
        t.github.last_token_request().unwrap(),
        json!({"repositories": ["api"], "permissions": {"contents": "write", "pull_requests": "read"}})
    );

    // The audit record: what was asked and the token's fingerprint, never the token.
    let records = t.app.audit_records(&id).await;
    assert_eq!(records.len(), 1);
    let text = records[0].to_string();
    assert!(!text.contains(token), "{text}");
    let github = &records[0]["detail"]["github"];
    assert_eq!(github["token_sha256"], sha256_hex(token));
    assert_eq!(github["repositories"], json!(["api"]));
    assert_eq!(
        github["permissions"],
        json!({"contents": "write", "pull_requests": "read"})
    );
    assert_eq!(github["installation_id"], 42);
    assert!(
        github["github_request_id"]
            .as_str()
            .unwrap()
            .starts_with("FAKE:42:")
    );
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(records[0]["policy"], "release-bot");

    // The installation is looked up once, then remembered.
    let again = t
        .exchange("deploy", Some("github:acme/homebrew-tap"), None)
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(t.github.lookups(), 1);
    let metrics = t.app.metrics_page().await;
    assert!(
        metrics.contains(r#"sts_github_calls_total{call="access_token",outcome="ok"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn scope_narrows_the_permissions() {
    let t = start().await;
    let response = t
        .exchange("deploy", Some("github:acme"), Some("contents:read"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "contents:read");
    assert_eq!(
        t.github.last_token_request().unwrap(),
        json!({"repositories": ["api", "homebrew-tap"], "permissions": {"contents": "read"}}),
        "permissions left out are not asked for"
    );
    // Without an audience: the whole grant.
    let whole = t.exchange("deploy", None, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        t.github.last_token_request().unwrap()["permissions"],
        json!({"contents": "write", "pull_requests": "read"})
    );
}

#[tokio::test]
async fn what_the_grant_does_not_hold_is_refused_without_asking_github() {
    let t = start().await;
    for scope in [
        "pull_requests:write",
        "issues:read",
        "contents:admin",
        "contents",
    ] {
        let response = t
            .exchange("deploy", Some("github:acme/api"), Some(scope))
            .await;
        expect_error(response, 400, "invalid_scope").await;
    }
    for audience in [
        "github:acme/private",
        "github:other/api",
        "github:acme/../x",
        "acme/api",
    ] {
        let response = t.exchange("deploy", Some(audience), None).await;
        expect_error(response, 400, "invalid_target").await;
    }
    // A token no policy admits.
    let idp = &t.app.idp;
    let stranger = idp.token(&idp.claims_with(json!({"sub": "repo:evil/api:ref:refs/heads/main"})));
    let response = t
        .app
        .exchange(&stranger, Some("github:acme/api"), None)
        .await;
    expect_error(response, 400, "invalid_request").await;
    assert_eq!(
        t.github.calls(),
        0,
        "a denied exchange makes no call to GitHub"
    );
}

#[tokio::test]
async fn an_owner_without_the_app_is_an_invalid_target() {
    let t = start().await;
    let response = t
        .app
        .post_token(&[
            ("grant_type", crate::helpers::GRANT),
            ("subject_token", &t.subject("elsewhere")),
            ("subject_token_type", crate::helpers::ID_TOKEN),
            ("audience", "github:nobody"),
        ])
        .await;
    let body = expect_error(response, 400, "invalid_target").await;
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("\"nobody\""), "{description}");
    assert!(!description.contains("PRIVATE"), "{description}");
    assert_eq!(t.github.lookups(), 2, "an organisation's, then a user's");
    // A user's installation is found by the second lookup; GitHub then refuses (422) a
    // permission the installation lacks.
    let personal = t.exchange("personal", Some("github:octocat"), None).await;
    let id = request_id(&personal);
    expect_error(personal, 400, "invalid_target").await;
    assert_eq!(t.github.lookups(), 4);
    let records = t.app.audit_records(&id).await;
    assert_eq!(records[0]["reason"], "github_refused");
    assert_eq!(records[0]["detail"]["github"]["github_status"], 422);
    // GitHub refusing the app itself (401: a key it does not know) is no different.
    t.github.set_mode(Mode::Status(401));
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    expect_error(response, 400, "invalid_target").await;
}

#[tokio::test]
async fn github_down_is_503_and_the_next_call_succeeds() {
    let t = start().await;
    t.github.set_mode(Mode::Status(502));
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let id = request_id(&response);
    expect_error(response, 503, "temporarily_unavailable").await;
    assert_eq!(
        t.github.calls(),
        3,
        "connection errors and 5xx are retried, boundedly"
    );
    let records = t.app.audit_records(&id).await;
    assert_eq!(records[0]["reason"], "github_unavailable");
    assert_eq!(records[0]["detail"]["github"]["github_status"], 502);

    t.github.set_mode(Mode::Normal);
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_hung_github_is_503_within_the_deadline() {
    let t = start_with(|c| {
        c.upstream_timeout = sts_broker::duration::HumanDuration(Duration::from_millis(300));
    })
    .await;
    t.github.set_mode(Mode::Delay(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    expect_error(response, 503, "temporarily_unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(t.github.calls(), 1, "a call that timed out is not repeated");
}

#[tokio::test]
async fn rate_limits_are_503_with_githubs_retry_after() {
    let t = start().await;
    t.github.set_mode(Mode::SecondaryLimit { retry_after: 30 });
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(t.github.calls(), 1, "a rate limit is not retried");

    t.github.set_mode(Mode::PrimaryLimit { reset_in: 120 });
    let response = t.exchange("deploy", Some("github:acme/api"), None).await;
    assert_eq!(response.status(), 503);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=121).contains(&wait), "{wait}");
    expect_error(response, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn the_octo_sts_action_request_over_tls() {
    use crate::tls::{client_trusting, make_pki, write_pair};
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki();
    write_pair(certs.path(), &pki);
    let der = pem_body(KEY_PEM);
    let pair = RsaKeyPair::from_der(&der).unwrap();
    let n = pair
        .public_key()
        .modulus()
        .big_endian_without_leading_zero()
        .to_vec();
    let e = pair
        .public_key()
        .exponent()
        .big_endian_without_leading_zero()
        .to_vec();
    let install = Installation {
        id: 42,
        kind: "orgs",
        repositories: vec!["api"],
        permissions: BTreeMap::from([("contents", "write"), ("pull_requests", "read")]),
    };
    let github = FakeGitHub::start(APP_ID, &n, &e, vec![("acme", install)]).await;
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("k.pem");
    std::fs::write(&key_file, KEY_PEM).unwrap();
    let text = POLICIES
        .replace("{KEY}", key_file.to_str().unwrap())
        .replace("{GITHUB}", &github.url);
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    let app = spawn_app_full(&text, |c| {
        c.tls_cert_file = Some(cert.clone());
        c.tls_key_file = Some(key.clone());
    })
    .await;
    let client = client_trusting(&pki.ca_pem);
    let subject = app
        .idp
        .token(&app.idp.claims_with(json!({"workflow": "deploy"})));
    // What octo-sts/action sends: GET, scope and identity in the query, the OIDC token as
    // the bearer.
    let response = client
        .get(format!(
            "{}/sts/exchange?scope=acme/api&identity=release-bot",
            app.address
        ))
        .header("authorization", format!("Bearer {subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["token"].as_str(),
        github.tokens().first().map(String::as_str)
    );
    assert_eq!(
        github.last_token_request().unwrap()["repositories"],
        json!(["api"])
    );
    // A repository outside the grant: a non-2xx answer with a message, as octo-sts clients read.
    let refused = client
        .get(format!(
            "{}/sts/exchange?scope=acme/other&identity=release-bot",
            app.address
        ))
        .header("authorization", format!("Bearer {subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_target");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn explain_shows_the_grant_that_would_be_asked_for() {
    let t = start().await;
    let response = t
        .app
        .admin(Method::POST, "/explain")
        .json(
            &json!({"subject_token": t.subject("deploy"), "audience": "github:acme/api",
                      "scope": "contents:read"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["decision"], "allow");
    assert_eq!(
        body["github"],
        json!({"app": "acme-bot", "owner": "acme", "repositories": ["api"],
               "permissions": {"contents": "read"}})
    );
    assert_eq!(t.github.calls(), 0, "explain never calls GitHub");
}

/// The `errors` of an admin API refusal, one per line.
fn errors(body: &Value) -> String {
    let list = body["errors"].as_array().into_iter().flatten();
    list.filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn documents_that_cannot_work_are_refused() {
    let t = start().await;
    let put = |name: &str, doc: Value| {
        t.app
            .admin(Method::PUT, &format!("/policies/{name}"))
            .json(&doc)
            .send()
    };
    let policy = |grant: Value| json!({"issuer": "fake", "subject": "repo:acme/api:ref:refs/heads/main", "grant": grant});
    let github = |extra: Value| {
        let mut g =
            json!({"app": "acme-bot", "owner": "acme", "permissions": {"contents": "read"}});
        g.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        g
    };
    let cases = [
        (
            policy(json!({"github": github(json!({"permissions": {"contnets": "read"}}))})),
            "grant.github.permissions: \"contnets\" is not a GitHub App permission",
        ),
        (
            policy(json!({"github": github(json!({"permissions": {"contents": "admin"}}))})),
            "grant.github.permissions: contents: \"admin\" is not one of read, write",
        ),
        (
            policy(json!({"audience": "a", "github": github(json!({}))})),
            "grant.audience: a grant gives `audience`",
        ),
        (
            policy(json!({"github": github(json!({"repositories": []}))})),
            "grant.github.repositories: may not be empty",
        ),
        (
            policy(json!({"github": github(json!({"app": "nope"}))})),
            "grant.github.app: names an unknown GitHubApp \"nope\"",
        ),
        (
            policy(json!({"github": github(json!({"installation": 1}))})),
            "grant.github.installation: unknown field",
        ),
    ];
    for (doc, expected) in cases {
        let response = put("tools", doc.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{doc}");
        let body: Value = response.json().await.unwrap();
        assert!(errors(&body).contains(expected), "{expected}: {body}");
    }
    // An app whose key cannot be read.
    let response = t
        .app
        .admin(Method::PUT, "/github-apps/other")
        .json(&json!({"app_id": 7, "private_key_file": "/nonexistent/key.pem"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        errors(&body).contains("private_key_file: cannot read"),
        "{body}"
    );
    // The stored app shows where its key is, never the key.
    let shown: Value = t
        .app
        .admin(Method::GET, "/github-apps/acme-bot")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["app_id"], APP_ID, "{shown}");
    assert!(!shown.to_string().contains("PRIVATE KEY"), "{shown}");
}
