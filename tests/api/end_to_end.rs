//! CI client → broker → internal API, each a real process on loopback; only the identity
//! provider is the test's fake.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{ADMIN_TOKEN, FakeIdp, KEK, POLICIES, jti_of};

const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

/// `cargo test` builds the examples beside the binaries.
fn example(name: &str) -> PathBuf {
    PathBuf::from(BIN).with_file_name("examples").join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_up(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(url).await.is_err() {
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `sts-broker serve` as a process on a free port, with the test policies; its URL.
async fn start_broker(idp: &FakeIdp, dir: &std::path::Path) -> (Running, String) {
    start_broker_with(idp, dir, POLICIES).await
}

/// [`start_broker`] with these policies (`{IDP}` is replaced by the fake issuer's URL).
pub async fn start_broker_with(
    idp: &FakeIdp,
    dir: &std::path::Path,
    policy_text: &str,
) -> (Running, String) {
    start_broker_configured(idp, dir, policy_text, "").await
}

/// [`start_broker_with`], with these lines added to its configuration file.
pub async fn start_broker_configured(
    idp: &FakeIdp,
    dir: &std::path::Path,
    policy_text: &str,
    extra_config: &str,
) -> (Running, String) {
    let policies = dir.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        policy_text.replace("{IDP}", &idp.url),
    )
    .unwrap();
    let broker_port = free_port();
    let broker_url = format!("http://127.0.0.1:{broker_port}");
    let config = dir.join("sts-broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{broker_port}\"\n\
             database_url = \"sqlite://{}\"\n\
             policies_dir = \"{}\"\n\
             key_encryption_key = \"{KEK}\"\n\
             admin_token = \"{ADMIN_TOKEN}\"\n\
             allow_insecure_loopback_issuers = true\n{extra_config}",
            dir.join("b.db").display(),
            policies.display()
        ),
    )
    .unwrap();
    (restart_broker(dir, &broker_url).await, broker_url)
}

/// `sts-broker serve` again on the configuration [`start_broker_with`] wrote in `dir`.
pub async fn restart_broker(dir: &std::path::Path, broker_url: &str) -> Running {
    let broker = Running(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(dir.join("sts-broker.toml"))
            .env_remove("STS_BROKER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_up(&format!("{broker_url}/healthz")).await;
    broker
}

/// `POST /token` at the broker `url` with a fresh token of `idp`.
pub async fn exchange_at(
    client: &reqwest::Client,
    url: &str,
    idp: &FakeIdp,
) -> reqwest::Result<reqwest::Response> {
    let form = crate::helpers::form(&[
        ("grant_type", crate::helpers::GRANT),
        ("subject_token", &idp.token(&idp.claims())),
        ("subject_token_type", crate::helpers::ID_TOKEN),
    ]);
    client
        .post(format!("{url}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
}

/// The audit records of `request_id` as the admin API of the broker at `url` shows them.
pub async fn audit_records(url: &str, request_id: &str) -> Vec<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(format!("{url}/admin/v1/audit/{request_id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    if response.status() == 404 {
        return Vec::new();
    }
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn ci_client_to_broker_to_internal_api() {
    let api_bin = example("internal_api");
    assert!(
        api_bin.exists(),
        "{} is built by cargo test",
        api_bin.display()
    );
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker(&idp, dir.path()).await;

    let api_port = free_port();
    let _api = Running(
        Command::new(&api_bin)
            .env("BROKER_URL", &broker_url)
            .env("AUDIENCE", "https://deploy.internal")
            .env("LISTEN", format!("127.0.0.1:{api_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deploy = format!("http://127.0.0.1:{api_port}/deploy");
    wait_until_up(&deploy).await;

    let token_file = dir.path().join("oidc-token");
    std::fs::write(&token_file, idp.token(&idp.claims())).unwrap();
    let exchange = |scope: &'static str| {
        let (broker_url, token_file) = (broker_url.clone(), token_file.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args([
                    "exchange",
                    "--broker",
                    &broker_url,
                    "--audience",
                    "https://deploy.internal",
                ])
                .args(["--scope", scope, "--token-file"])
                .arg(&token_file)
                .env_remove("GITHUB_ACTIONS")
                .output()
                .unwrap()
        })
    };
    let out = exchange("deploy:write").await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let client = reqwest::Client::new();
    let ok = client
        .get(&deploy)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["policy"], "api-deploy");
    assert_eq!(body["on_behalf_of"], "repo:acme/api:ref:refs/heads/main");

    // A token without deploy:write is refused with 403 and an RFC 6750 challenge.
    let out = exchange("artifacts:read").await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let weak = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let forbidden = client.get(&deploy).bearer_auth(&weak).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let challenge = forbidden.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    // The OIDC token itself is not a broker token.
    let upstream = client
        .get(&deploy)
        .bearer_auth(idp.token(&idp.claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(upstream.status(), 401);
}

/// SIGTERM while exchanges are in flight: the broker stops accepting, answers what it took,
/// exits cleanly, and every token it issued has its audit record.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_finishes_in_flight_exchanges_and_their_audit() {
    let idp = std::sync::Arc::new(FakeIdp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, broker_url) = start_broker(&idp, dir.path()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (idp, url, stop) = (idp.clone(), broker_url.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut issued = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match exchange_at(&client, &url, &idp).await {
                    Ok(r) if r.status() == 200 => {
                        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                        let body: serde_json::Value = r.json().await.unwrap();
                        issued.push((id, body["access_token"].as_str().unwrap().to_owned()));
                    }
                    // Refused connections once it stops accepting.
                    _ => break,
                }
            }
            issued
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = broker.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = broker.0.wait().unwrap();
        (broker, status)
    })
    .await
    .unwrap()
    .1;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let mut issued = Vec::new();
    for w in workers {
        issued.extend(w.await.unwrap());
    }
    assert!(!issued.is_empty());
    // The records are in the journal; a restart indexes whatever the index had not reached.
    let _again = restart_broker(dir.path(), &broker_url).await;
    for (id, token) in &issued {
        let records = audit_records(&broker_url, id).await;
        assert_eq!(records.len(), 1, "request {id} has its audit record");
        assert_eq!(records[0]["issued"]["jti"], jti_of(token));
    }
    eprintln!(
        "{} tokens issued before and during shutdown, all audited",
        issued.len()
    );
}
