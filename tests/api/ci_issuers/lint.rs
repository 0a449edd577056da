//! `policy lint` on the examples and on what the examples warn about; and the examples are
//! never loaded unless asked for.

use std::path::Path;

use reqwest::Method;
use serde_json::Value;
use sts_broker::startup::{Application, Options};

use crate::cli::{run, stdout};
use crate::helpers::{ADMIN_TOKEN, test_config};

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[tokio::test]
async fn the_examples_lint_clean() {
    let out = run(
        vec![
            "policy".into(),
            "lint".into(),
            "--strict".into(),
            repo("policies/examples"),
        ],
        None,
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("11 issuers") && text.contains("0 warning(s)"),
        "{text}"
    );
}

#[tokio::test]
async fn lint_explains_owner_pins_guarded_events_and_claim_paths() {
    let dir = tempfile::tempdir().unwrap();
    let gh = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\nshared: true\n";
    let ghes = "---\nkind: Issuer\nname: ghes\nurl: https://ghes.example/_services/token\naudiences: [sts]\n";
    let policy = |name: &str, issuer: &str, body: &str| {
        format!(
            "---\nkind: TrustPolicy\nname: {name}\nissuer: {issuer}\n{body}grant: {{audience: api}}\n"
        )
    };
    let warned = [
        gh.to_owned(),
        ghes.to_owned(),
        policy(
            "by-name",
            "gh",
            "subject: {glob: \"repo:acme/*:ref:refs/heads/main\"}\n",
        ),
        policy(
            "dash-form",
            "gh",
            "subject: repo:acme-2001/api-1001:ref:refs/heads/main\n",
        ),
        policy("ghes-ids", "ghes", "claims: {repository_id: \"7\"}\n"),
    ]
    .concat();
    std::fs::write(dir.path().join("w.yaml"), &warned).unwrap();
    let args = |d: &Path| vec!["policy".into(), "lint".into(), d.display().to_string()];
    let out = run(args(dir.path()), None).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("w.yaml:9: warning: url: looks like GitHub Enterprise Server"),
        "{text}"
    );
    assert!(text.contains("repo:OWNER@OWNER_ID/"), "{text}");
    assert!(text.contains("repository_owner_id: \"2001\""), "{text}");

    let errors = tempfile::tempdir().unwrap();
    let refused = [
        gh.to_owned(),
        policy(
            "dash-wildcard",
            "gh",
            "subject: {glob: \"repo:*-2001/*:ref:refs/heads/main\"}\n",
        ),
        policy(
            "bad-path",
            "gh",
            "subject: repo:acme/api:ref:refs/heads/main\nclaims:\n  /kubernetes.io/a~2: x\n",
        ),
    ]
    .concat();
    std::fs::write(errors.path().join("e.yaml"), &refused).unwrap();
    let out = run(args(errors.path()), None).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("e.yaml:10: subject:") && text.contains("pin an owner"),
        "{text}"
    );
    assert!(
        text.contains("e.yaml:17: claims:") && text.contains("/kubernetes.io/a~2"),
        "{text}"
    );
}

#[tokio::test]
async fn the_examples_are_not_loaded_with_the_policies_folder() {
    // `serve --dev` over the shipped `policies/` folder: its own documents and the dev ones.
    let dir = tempfile::tempdir().unwrap();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut config = test_config(&dir.path().join("b.db"), &policies);
    config.key_encryption_key = None;
    let app = Application::build(config, Options { dev: true })
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let names = |kind: &'static str| {
        let client = client.clone();
        let address = address.clone();
        async move {
            let body: Value = client
                .request(Method::GET, format!("{address}/admin/v1/{kind}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["document"]["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let issuers = names("issuers").await;
    assert!(issuers.contains(&"gitlab".to_owned()), "{issuers:?}");
    for example in [
        "ghes",
        "gitlab-com",
        "buildkite",
        "circleci",
        "eks-prod",
        "kubernetes-prod",
    ] {
        assert!(!issuers.contains(&example.to_owned()), "{issuers:?}");
    }
    let policies = names("policies").await;
    assert!(
        policies.contains(&"gha-web-deploy-staging".to_owned()),
        "{policies:?}"
    );
    assert!(
        policies
            .iter()
            .all(|p| !p.starts_with("github-") && !p.starts_with("k8s-") && !p.starts_with("tfc-")),
        "{policies:?}"
    );
}
