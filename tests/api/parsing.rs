//! Documents are read strictly wherever they come from (policy files through `policy lint`,
//! `serve` and `apply`; admin-API JSON): a key given twice at any depth is refused, nesting
//! deeper than 64 levels is refused before parsing, and every error names its field path.

use std::process::Output;

use reqwest::Method;
use serde_json::{Value, json};
use sts_broker::startup::{Application, Options};

use crate::helpers::{ADMIN_TOKEN, POLICIES, TestApp, spawn_app, test_config};

const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

const ISSUER: &str =
    "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\n";

/// Runs the binary off the async runtime.
async fn run(args: &[&str], broker: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
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

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A folder of policy files; the path as text.
fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().display().to_string();
    (dir, path)
}

#[tokio::test]
async fn lint_reports_every_error_of_every_file_with_its_path() {
    let files = [
        ("a.yaml", format!("{ISSUER}---\nkind: TrustPolicy\nname: no-audience\nissuer: gh\nsubject: repo:acme/api:ref:refs/heads/main\ngrant:\n  scopes: [read]\n")),
        ("b.yaml", "kind: TrustPolicy\nname: unclosed\nissuer: gh\nsubject: [repo:acme/api\ngrant: {audience: a}\n".to_owned()),
        ("c.yaml", "kind: TrustPolicy\nname: twice\nissuer: gh\nsubjekt: x\nclaims:\n  repository_owner_id: \"1342004\"\n  repository_owner_id: {glob: \"**\"}\ngrant: {audience: a}\n".to_owned()),
        ("d.yaml", "kind: TrustPolicy\nname: stranger\nissuer: nope\nsubject: x\ngrant: {audience: a}\n".to_owned()),
        // An issuer that cannot be read, and a policy that names it: one error, not two.
        ("e.yaml", "kind: Issuer\nname: broken\nurl: https://gitlab.example.com\n---\nkind: TrustPolicy\nname: orphan\nissuer: broken\nsubject: x\ngrant: {audience: a}\n".to_owned()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_dir, path) = folder(&files);
    let out = run(&["policy", "lint", &path], None).await;
    assert_eq!(out.status.code(), Some(1));
    let shown: Vec<String> = lines(&out)
        .iter()
        .map(|l| l.replacen(&format!("{path}/"), "", 1))
        .collect();
    assert_eq!(
        shown,
        [
            "a.yaml:11: grant.audience: missing field",
            "b.yaml:5: did not find expected ',' or ']'",
            "c.yaml:4: subjekt: unknown field, expected one of `kind`, `name`, `description`, `issuer`, `subject`, `claims`, `grant`",
            "c.yaml:7: claims.repository_owner_id: duplicate key",
            "d.yaml:3: issuer: names an unknown issuer \"nope\"",
            "e.yaml:1: audiences: missing field",
        ],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "6 error(s)");
}

#[tokio::test]
async fn lint_refuses_duplicate_keys_below_the_top_level() {
    for (doc, line, path) in [
        (
            "claims:\n  repository_owner_id: \"1\"\n  ref: refs/heads/main\n  repository_owner_id: {glob: \"**\"}\n",
            14,
            "claims.repository_owner_id",
        ),
        (
            "claims: {repository_owner_id: \"1\", 'repository_owner_id': \"2\"}\n",
            11,
            "claims.repository_owner_id",
        ),
        (
            "claims:\n  repository_owner_id: \"1\"\n  ref: {glob: a, glob: b}\n",
            13,
            "claims.ref.glob",
        ),
    ] {
        let text = format!(
            "{}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubject: repo:acme/api:ref:refs/heads/main\n{doc}grant:\n  audience: a\n  claims: {{x: \"{{repository}}\"}}\n",
            ISSUER.replace("audiences", "shared: true\naudiences")
        );
        let (_dir, dir) = folder(&[("p.yaml", &text)]);
        let out = run(&["policy", "lint", &dir], None).await;
        assert_eq!(out.status.code(), Some(1), "{text}");
        // The issuer is lines 1-5 and the policy starts at line 7.
        let expected = format!("{dir}/p.yaml:{line}: {path}: duplicate key");
        assert_eq!(lines(&out), [expected], "{text}");
    }
}

#[tokio::test]
async fn lint_refuses_a_four_mebibyte_nest_before_parsing() {
    let size = 4 * 1024 * 1024 - 200;
    let flow = format!(
        "kind: TrustPolicy\nname: p\nissuer: gh\nclaims:\n  a: {}",
        "[".repeat(size)
    );
    let block = format!(
        "kind: TrustPolicy\nname: q\nissuer: gh\nclaims:\n  a:\n{}x\n",
        "- ".repeat(size / 2)
    );
    let (_dir, dir) = folder(&[("flow.yaml", &flow), ("block.yaml", &block)]);
    let out = run(&["policy", "lint", &dir], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out),
        [
            format!("{dir}/block.yaml:6: nesting deeper than 64 levels"),
            format!("{dir}/flow.yaml:5: nesting deeper than 64 levels"),
        ]
    );
}

#[tokio::test]
async fn serve_refuses_the_whole_set_and_names_every_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("a.yaml"),
        POLICIES.replace("{IDP}", "http://127.0.0.1:9"),
    )
    .unwrap();
    std::fs::write(
        policies.join("b.yaml"),
        "kind: TrustPolicy\nname: twice\nissuer: fake\nsubject: x\nclaims:\n  repository_id: \"1\"\n  repository_id: {glob: \"**\"}\ngrant: {audience: a}\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("c.yaml"),
        format!(
            "kind: TrustPolicy\nname: deep\nissuer: fake\nsubject: {}x\n",
            "[".repeat(100)
        ),
    )
    .unwrap();
    let db = dir.path().join("b.db");
    let err = Application::build(test_config(&db, &policies), Options::default())
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("b.yaml:7: claims.repository_id: duplicate key"),
        "{text}"
    );
    assert!(
        text.contains("c.yaml:4: nesting deeper than 64 levels"),
        "{text}"
    );
}

#[tokio::test]
async fn apply_refuses_a_folder_with_any_invalid_file_and_says_every_error() {
    let app = spawn_app().await;
    let policy = |name: &str, extra: &str| {
        format!(
            "kind: TrustPolicy\nname: {name}\nissuer: fake\nsubject: repo:acme/api:ref:refs/heads/main\nclaims:\n  repository_id: \"1\"\n{extra}grant: {{audience: https://git.internal}}\n"
        )
    };
    let (_dir, dir) = folder(&[
        ("a.yaml", &policy("fine", "")),
        (
            "b.yaml",
            &policy("twice", "  repository_id: {glob: \"**\"}\n"),
        ),
        ("c.yaml", &policy("typo", "subjekt: x\n")),
    ]);
    let out = run(&["policy", "apply", &dir], Some(&app.address)).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out),
        [
            format!("{dir}/b.yaml:7: claims.repository_id: duplicate key"),
            format!(
                "{dir}/c.yaml:7: subjekt: unknown field, expected one of `kind`, `name`, `description`, `issuer`, `subject`, `claims`, `grant`"
            ),
        ]
    );
    let fine = app
        .admin(Method::GET, "/policies/fine")
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 404, "nothing was applied");
}

/// PUTs a raw JSON body (serde_json could not even write a duplicate key).
async fn put_raw(app: &TestApp, path: &str, body: String) -> (u16, Value) {
    let response = app
        .admin(Method::PUT, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const POLICY_JSON: &str = r#"{"issuer": "fake", "subject": "repo:acme/tools:ref:refs/heads/main", "claims": {CLAIMS}, "grant": {"audience": "https://tools.internal"}}"#;

#[tokio::test]
async fn admin_json_refuses_duplicate_keys_at_any_depth() {
    let app = spawn_app().await;
    let body = |claims: &str| POLICY_JSON.replace("{CLAIMS}", claims);
    let twice = r#"{"repository_owner_id": "2001", "repository_owner_id": {"glob": "**"}}"#;
    let (status, answer) = put_raw(&app, "/policies/tools", body(twice)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_request");
    assert_eq!(
        answer["error_description"],
        "body is not valid JSON: claims.repository_owner_id: duplicate key"
    );
    let stored = app
        .admin(Method::GET, "/policies/tools")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 404, "nothing stored");

    let deeper = r#"{"ref": {"one_of": ["a"], "one_of": ["b"]}}"#;
    let (status, answer) = put_raw(&app, "/policies/tools", body(deeper)).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error_description"],
        "body is not valid JSON: claims.ref.one_of: duplicate key"
    );

    let apply = format!(
        r#"{{"documents": [{}], "dry_run": true}}"#,
        body(twice).replacen('{', r#"{"kind": "TrustPolicy", "name": "tools", "#, 1)
    );
    let response = app
        .admin(Method::POST, "/apply")
        .header("content-type", "application/json")
        .body(apply)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["error_description"],
        "body is not valid JSON: documents[0].claims.repository_owner_id: duplicate key"
    );

    // The same document without the second key is accepted.
    let once = r#"{"repository_owner_id": "2001"}"#;
    let (status, answer) = put_raw(&app, "/policies/tools", body(once)).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn admin_json_refuses_nesting_deeper_than_64_levels() {
    let app = spawn_app().await;
    let nest = |depth: usize| {
        // The policy object, `claims` and the matcher are three levels; the rest is one_of.
        let inner = format!("{}\"x\"{}", "[".repeat(depth - 3), "]".repeat(depth - 3));
        POLICY_JSON.replace("{CLAIMS}", &format!(r#"{{"ref": {{"one_of": {inner}}}}}"#))
    };
    let (status, answer) = put_raw(&app, "/policies/tools", nest(65)).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error_description"],
        "body is not valid JSON: nesting deeper than 64 levels"
    );
    // At 64 levels the body is read, and refused for what it says.
    let (status, answer) = put_raw(&app, "/policies/tools", nest(64)).await;
    assert_eq!(status, 400);
    let errors = answer["errors"].to_string();
    assert!(errors.contains("claims.ref"), "{answer}");
    // A body as deep as 64 KiB allows is refused the same way.
    let deep = "[".repeat(60 * 1024);
    let (status, answer) = put_raw(&app, "/policies/tools", deep).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error_description"],
        "body is not valid JSON: nesting deeper than 64 levels"
    );
}

#[tokio::test]
async fn admin_errors_name_the_field_path() {
    let app = spawn_app().await;
    let put = |body: Value| app.admin(Method::PUT, "/policies/tools").json(&body).send();
    let errors = |answer: &Value| -> Vec<String> {
        answer["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect()
    };
    let missing: Value = put(json!({"issuer": "fake", "subject": "x", "grant": {"scopes": ["a"]}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errors(&missing), ["grant.audience: missing field"]);
    let unknown: Value =
        put(json!({"issuer": "fake", "subject": "x", "grant": {"audience": "a", "tll": "5m"}}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        errors(&unknown),
        [
            "grant.tll: unknown field, expected one of `audience`, `scopes`, `ttl`, `subject`, `claims`, `github`"
        ]
    );
    let invalid: Value =
        put(json!({"issuer": "fake", "subject": "x", "grant": {"audience": "a", "ttl": "5h"}}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        errors(&invalid),
        ["TrustPolicy \"tools\": grant.ttl: 5h exceeds max_ttl (1h)"]
    );
    let response = app
        .admin(Method::POST, "/apply")
        .json(&json!({"documents": [
            {"kind": "TrustPolicy", "name": "one", "issuer": "fake", "subject": "x", "grant": {"audience": "a"}},
            {"kind": "TrustPolicy", "name": "two", "issuer": "fake", "subject": "x", "grant": {}},
        ], "dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        errors(&answer),
        ["document 1: grant.audience: missing field"]
    );
}
