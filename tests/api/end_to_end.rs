//! CI client → broker → internal API, each a real process on loopback; only the identity
//! provider is the test's fake.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{FakeIdp, KEK, POLICIES};

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
struct Running(Child);

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
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("p.yaml"), POLICIES.replace("{IDP}", &idp.url)).unwrap();
    let broker_port = free_port();
    let broker_url = format!("http://127.0.0.1:{broker_port}");
    let config = dir.path().join("sts-broker.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{broker_port}\"\n\
             database_url = \"sqlite://{}\"\n\
             policies_dir = \"{}\"\n\
             key_encryption_key = \"{KEK}\"\n\
             allow_insecure_loopback_issuers = true\n",
            dir.path().join("b.db").display(),
            policies.display()
        ),
    )
    .unwrap();
    let _broker = Running(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("STS_BROKER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_up(&format!("{broker_url}/healthz")).await;

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
