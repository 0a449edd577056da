//! The command line, run as the real binary.

use std::process::Output;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

/// Runs the binary off the async runtime, with the test broker's URL and admin token.
pub async fn run(args: Vec<String>, broker: Option<&str>) -> Output {
    let broker = broker.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(&args)
            .env_remove("STS_BROKER_CONFIG")
            .env("STS_BROKER_ADMIN_TOKEN", ADMIN_TOKEN);
        if let Some(b) = broker {
            cmd.env("STS_BROKER_URL", b);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn lint_reports_errors_with_lines_and_warnings_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\n";
    let warned = format!(
        "{issuer}---\nkind: TrustPolicy\nname: by-name\nissuer: gh\nclaims:\n  repository: acme/api\ngrant:\n  audience: api\n  ttl: 45m\n"
    );
    std::fs::write(dir.path().join("p.yaml"), &warned).unwrap();
    let args = |strict: bool| {
        let mut a = vec![
            "policy".into(),
            "lint".into(),
            dir.path().display().to_string(),
        ];
        if strict {
            a.push("--strict".into());
        }
        a
    };
    let out = run(args(false), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("p.yaml:9: warning") && text.contains("repository_id"),
        "{text}"
    );
    assert!(
        text.contains("p.yaml:13: warning") && text.contains("45m"),
        "{text}"
    );
    assert_eq!(run(args(true), None).await.status.code(), Some(1));
    std::fs::write(
        dir.path().join("p.yaml"),
        warned.replace("ttl: 45m", "ttl: 3h"),
    )
    .unwrap();
    let out = run(args(false), None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("p.yaml:13:") && stdout(&out).contains("exceeds max_ttl"),
        "{}",
        stdout(&out)
    );
    let missing = run(
        vec!["policy".into(), "lint".into(), "/no/such/dir".into()],
        None,
    )
    .await;
    assert_eq!(missing.status.code(), Some(2));
    let usage = run(vec!["policy".into(), "frobnicate".into()], None).await;
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test]
async fn diff_then_apply_then_prune_against_a_running_broker() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let docs = format!(
        "kind: Issuer\nname: fake\nurl: \"{}\"\naudiences: [sts-test]\nalgorithms: [ES256, RS256]\n---\nkind: TrustPolicy\nname: from-git\nissuer: fake\nsubject: repo:acme/api:ref:refs/heads/main\nclaims:\n  repository_id: \"1001\"\ngrant:\n  audience: https://git.internal\n",
        app.idp.url
    );
    std::fs::write(dir.path().join("all.yaml"), docs).unwrap();
    let d = dir.path().display().to_string();
    let diff = run(
        vec!["policy".into(), "diff".into(), d.clone()],
        Some(&app.address),
    )
    .await;
    // Something would change: exit 1, as `git diff --exit-code`.
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        stdout(&diff).contains("+name: from-git"),
        "{}",
        stdout(&diff)
    );
    assert_eq!(
        app.admin(Method::GET, "/policies/from-git")
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "diff changes nothing"
    );
    let apply = run(
        vec!["policy".into(), "apply".into(), d.clone()],
        Some(&app.address),
    )
    .await;
    assert_eq!(apply.status.code(), Some(0));
    assert!(stdout(&apply).contains("applied: 1"), "{}", stdout(&apply));
    assert_eq!(
        app.admin(Method::GET, "/policies/from-git")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let prune = run(
        vec!["policy".into(), "apply".into(), d, "--prune".into()],
        Some(&app.address),
    )
    .await;
    assert!(
        stdout(&prune).contains("- TrustPolicy/api-deploy"),
        "{}",
        stdout(&prune)
    );
    assert_eq!(
        app.admin(Method::GET, "/policies/api-deploy")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn explain_prints_each_check_and_exits_by_decision() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let denied = dir.path().join("denied.jwt");
    std::fs::write(
        &denied,
        app.idp
            .token(&app.idp.claims_with(json!({"workflow": "evil"}))),
    )
    .unwrap();
    let out = run(
        vec![
            "policy".into(),
            "explain".into(),
            "--token".into(),
            denied.display().to_string(),
            "--audience".into(),
            "https://deploy.internal".into(),
        ],
        Some(&app.address),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("decision: deny"), "{text}");
    assert!(
        text.contains("FAIL workflow: expected regex \"deploy|release\", got \"evil\""),
        "{text}"
    );
    let allowed = dir.path().join("ok.jwt");
    std::fs::write(&allowed, app.idp.token(&app.idp.claims())).unwrap();
    let out = run(
        vec![
            "policy".into(),
            "explain".into(),
            "--token".into(),
            allowed.display().to_string(),
        ],
        Some(&app.address),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// A refetch cooldown that a hung fetch could outlast is refused before anything starts.
#[tokio::test]
async fn serve_refuses_a_cooldown_not_longer_than_the_upstream_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("serve")
        .env_remove("STS_BROKER_CONFIG")
        .env("STS_BROKER_LISTEN", "127.0.0.1:0")
        .env(
            "STS_BROKER_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("db").display()),
        )
        .env("STS_BROKER_JWKS_REFETCH_COOLDOWN", "5s")
        .env("STS_BROKER_UPSTREAM_TIMEOUT", "5s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("serve started with an invalid configuration");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("jwks_refetch_cooldown"), "{stderr}");
}
