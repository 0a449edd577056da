//! Values from tokens cannot forge log lines: a claim with a newline and terminal escape
//! sequences, copied into an issued `sub` that then acts as an admin's name.

use reqwest::Method;
use serde_json::{Value, json};

use crate::child;
use crate::helpers::{FakeIdp, GRANT, ID_TOKEN, form};

/// A policy that lets the `admin` workflow in as an admin named by its `actor` claim.
const ADMINS: &str = r#"
---
kind: TrustPolicy
name: admins
issuer: fake
subject: {glob: "repo:acme/**"}
claims:
  workflow: admin
grant:
  audience: ["{BROKER}/admin"]
  scopes: [admin:write]
  subject: "{actor}"
"#;

const FORGED: &str = "2026-12-01T00:00:00.000000Z  INFO sts_broker::admin: admin change \
                      request_id=0 actor=bootstrap-admin action=delete";

/// Exchanges a token whose `actor` claim carries a forged log line for an admin credential
/// and makes an admin change with it; returns the broker's log.
async fn forge_through_the_admin_name(log_format: &str) -> (String, Value) {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = child::start(
        &idp,
        dir.path(),
        ADMINS,
        &format!("log_format = \"{log_format}\""),
        None,
    )
    .await;
    let actor = format!("mallory\n{FORGED}\r\n\u{1b}[2K\u{1b}[1A\u{2028}end");
    let token = idp.token(&idp.claims_with(json!({"workflow": "admin", "actor": actor})));
    let client = reqwest::Client::new();
    let issued: Value = client
        .post(format!("{}/token", broker.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("subject_token_type", ID_TOKEN),
            ("audience", &format!("{}/admin", broker.url)),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = issued["access_token"]
        .as_str()
        .expect("an admin credential");
    let changed = client
        .request(
            Method::PUT,
            format!("{}/admin/v1/policies/forged", broker.url),
        )
        .bearer_auth(admin)
        .json(&json!({
            "issuer": "fake",
            "subject": "repo:acme/forged:ref:refs/heads/main",
            "grant": {"audience": ["https://deploy.internal"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 201);
    let history: Value = client
        .get(format!("{}/admin/v1/policies/forged/history", broker.url))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (broker.log(), history)
}

fn assert_not_forged(log: &str) {
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("2026-12-01T00:00:00")),
        "a forged line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "a terminal escape reached the log:\n{log}"
    );
    assert!(
        !log.contains('\u{2028}'),
        "a line separator reached the log:\n{log}"
    );
}

#[tokio::test]
async fn a_claim_cannot_forge_a_text_log_line() {
    let (log, history) = forge_through_the_admin_name("text").await;
    assert_not_forged(&log);
    let line = log
        .lines()
        .find(|l| l.contains("admin change"))
        .unwrap_or_else(|| panic!("no admin change logged:\n{log}"));
    assert!(line.contains("actor=fake:mallory\\n2026-12-01"), "{line}");
    // As a name (history, audit) the actor carries no control characters either.
    let actor = history.to_string();
    assert!(actor.contains(r"mallory\\n2026-12-01"), "{actor}");
    assert!(!actor.contains(r"mallory\n"), "{actor}");
}

#[tokio::test]
async fn a_claim_cannot_forge_a_json_log_line() {
    let (log, _) = forge_through_the_admin_name("json").await;
    assert_not_forged(&log);
    for line in log.lines() {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(parsed.is_object(), "{line}");
    }
    assert!(log.contains("mallory"), "{log}");
}
