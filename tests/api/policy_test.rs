//! `policy test`: PolicyTest cases run offline by the real binary, through the server's own
//! decision; and the broker, lint and apply leave test documents alone.

use std::path::Path;
use std::process::Output;

use reqwest::Method;
use serde_json::{Value, json};
use sts_broker::startup::{Application, Options};

use crate::cli::{run, stdout};
use crate::helpers::{POLICIES, claims_of, spawn_app, test_config};

/// An issuer and one policy, offline (the issuer URL is never fetched).
const POLICY: &str = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\n---\nkind: TrustPolicy\nname: api-deploy\nissuer: gh\nsubject: repo:acme/api:ref:refs/heads/main\nclaims:\n  repository_id: \"42\"\ngrant:\n  audience: https://deploy.internal\n  scopes: [deploy:write, deploy:read]\n  ttl: 10m\n  subject: \"{repository}\"\n  claims: {repository: \"{repository}\"}\n";

/// A case for POLICY; `expect` is the text under `expect:`.
fn case(name: &str, repository_id: &str, expect: &str) -> String {
    format!(
        "kind: PolicyTest\nname: {name}\nissuer: gh\nnow: 2026-12-01T12:00:00Z\nclaims:\n  sub: repo:acme/api:ref:refs/heads/main\n  repository: acme/api\n  repository_id: \"{repository_id}\"\nrequest: {{audience: https://deploy.internal, scope: deploy:write}}\nexpect:\n{expect}"
    )
}

const ALLOWED: &str = "  decision: allow\n  policy: api-deploy\n  token: {sub: \"gh:acme/api\", aud: [https://deploy.internal], scope: deploy:write, iat: 1796126400, exp: 1796127000}\n";
const DENIED: &str = "  decision: deny\n  reason: not_admitted\n";

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

async fn policy_test(args: &[&str]) -> Output {
    let mut all = vec!["policy".to_owned(), "test".to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    run(all, None).await
}

fn lines(out: &Output) -> Vec<String> {
    stdout(out).lines().map(str::to_owned).collect()
}

/// A folder holding POLICY and these files.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yaml"), POLICY).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn path(dir: &tempfile::TempDir) -> String {
    dir.path().display().to_string()
}

#[tokio::test]
async fn the_shipped_suites_pass() {
    for (dir, at_least) in [("policies", 20), ("policies/examples", 9)] {
        let out = policy_test(&[&repo(dir)]).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{dir}: {text}");
        let lines = lines(&out);
        let (cases, summary) = lines.split_at(lines.len() - 1);
        assert!(cases.len() >= at_least, "{dir}: {text}");
        assert!(cases.iter().all(|l| l.starts_with("ok ")), "{text}");
        assert_eq!(summary[0], format!("{} passed, 0 failed", cases.len()));
    }
}

#[tokio::test]
async fn a_passing_suite_exits_0_with_one_line_per_case() {
    let tests = format!(
        "{}---\n{}",
        case("main deploys", "42", ALLOWED),
        case("another repository", "43", DENIED)
    );
    let dir = folder(&[("tests.yaml", &tests)]);
    let out = policy_test(&[&path(&dir)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        lines(&out),
        [
            "ok main deploys",
            "ok another repository",
            "2 passed, 0 failed"
        ]
    );
}

#[tokio::test]
async fn a_failing_expectation_exits_1_and_names_the_case_and_what_differed() {
    let wrong_token = ALLOWED
        .replace("gh:acme/api", "gh:acme/web")
        .replace("1796127000", "1796127900");
    let tests = [
        case("main deploys", "42", ALLOWED),
        case("wrong token", "42", &wrong_token),
        case("wrongly denied", "43", ALLOWED),
        case("wrongly allowed", "42", DENIED),
        case(
            "wrong reason",
            "42",
            "  decision: allow\n  reason: not_admitted\n",
        ),
    ]
    .join("---\n");
    let dir = folder(&[("tests.yaml", &tests)]);
    let out = policy_test(&[&path(&dir)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        lines(&out),
        [
            "ok main deploys",
            "FAIL wrong token: token.exp: expected 1796127900, got 1796127000; token.sub: expected \"gh:acme/web\", got \"gh:acme/api\"",
            "FAIL wrongly denied: decision: expected allow, got deny (not_admitted): policy api-deploy: repository_id expected equals \"42\", got \"43\"",
            "FAIL wrongly allowed: decision: expected deny, got allow (policy \"api-deploy\")",
            "FAIL wrong reason: reason: expected not_admitted, got issued",
            "1 passed, 4 failed",
        ]
    );
}

#[tokio::test]
async fn an_invalid_test_document_names_file_and_line_and_the_others_still_run() {
    let broken = case("typo", "42", "  decision: allow\n  polcy: api-deploy\n");
    let unknown_issuer = case("no such issuer", "42", DENIED).replace("issuer: gh", "issuer: gl");
    let dir = folder(&[(
        "tests.yaml",
        &[
            case("first", "42", ALLOWED),
            broken,
            unknown_issuer,
            case("last", "43", DENIED),
        ]
        .join("---\n"),
    )]);
    let out = policy_test(&[&path(&dir)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let file = dir.path().join("tests.yaml").display().to_string();
    assert_eq!(
        lines(&out),
        [
            "ok first".to_owned(),
            format!(
                "FAIL typo: {file}:26: expect.polcy: unknown field, expected one of `decision`, `policy`, `reason`, `token`, `github`"
            ),
            format!(
                "FAIL no such issuer: {file}:30: issuer: unknown issuer \"gl\": no Issuer of that name"
            ),
            "ok last".to_owned(),
            "2 passed, 2 failed".to_owned(),
        ]
    );
}

#[tokio::test]
async fn tests_come_from_each_path_once() {
    let dir = folder(&[("in-dir.yaml", &case("in dir", "42", ALLOWED))]);
    let more = tempfile::tempdir().unwrap();
    std::fs::write(more.path().join("a.yml"), case("in folder", "43", DENIED)).unwrap();
    std::fs::write(more.path().join("notes.txt"), "not yaml").unwrap();
    let file = more.path().join("one.yaml");
    std::fs::write(
        &file,
        format!("{POLICY}---\n{}", case("in file", "42", ALLOWED)),
    )
    .unwrap();
    let in_dir = dir.path().join("in-dir.yaml").display().to_string();
    let out = policy_test(&[
        &path(&dir),
        &path(&more),
        &file.display().to_string(),
        &in_dir,
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        lines(&out),
        [
            "ok in dir",
            "ok in folder",
            "ok in file",
            "3 passed, 0 failed"
        ]
    );
    let twice = format!(
        "{}---\n{}",
        case("same", "42", ALLOWED),
        case("same", "43", DENIED)
    );
    let dir = folder(&[("t.yaml", &twice)]);
    let out = policy_test(&[&path(&dir)]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        lines(&out)[1].starts_with("FAIL same: ")
            && lines(&out)[1].contains("duplicate PolicyTest name"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = folder(&[]);
    for args in [
        vec![],
        vec!["/no/such/dir".to_owned()],
        vec![path(&dir), "/no/such/file.yaml".to_owned()],
        vec![path(&dir), "--junit".to_owned()],
        vec![path(&dir), "--frobnicate".to_owned()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = policy_test(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
    }
    // Policies that do not load: the check failed, no case ran.
    let broken = folder(&[(
        "zz.yaml",
        "kind: TrustPolicy\nname: x\nissuer: nobody\ngrant: {audience: a}\n",
    )]);
    let out = policy_test(&[&path(&broken)]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("zz.yaml:3: issuer"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn the_junit_report_is_well_formed_and_escaped() {
    let tests = [
        case("'\"quoted\" <tag> & ''apostrophe'''", "42", ALLOWED),
        case(
            "fails",
            "42",
            &ALLOWED.replace("gh:acme/api", "<b>&amp;</b>]]>"),
        ),
    ]
    .join("---\n");
    let dir = folder(&[("t.yaml", &tests)]);
    let report = dir.path().join("report.xml");
    let out = policy_test(&[&path(&dir), "--junit", &report.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(1));
    let xml = std::fs::read_to_string(&report).unwrap();
    assert_well_formed(&xml);
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains(
            "<testcase name=\"&quot;quoted&quot; &lt;tag&gt; &amp; &apos;apostrophe&apos;\""
        ),
        "{xml}"
    );
    assert!(
        xml.contains("expected &quot;&lt;b&gt;&amp;amp;&lt;/b&gt;]]&gt;&quot;, got &quot;gh:acme/api&quot;</failure>"),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 2);
    assert_eq!(xml.matches("<failure ").count(), 1);
}

/// Elements nest and close, attribute values are quoted, and no `<` or `&` stands bare.
fn assert_well_formed(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("declaration");
    let mut open: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find(['<', '&']) {
        assert_text(&rest[..at]);
        rest = &rest[at..];
        if let Some(entity) = rest.strip_prefix('&') {
            let end = entity.find(';').expect("an entity ends");
            assert!(
                ["amp", "lt", "gt", "quot", "apos", "#10", "#13", "#9"].contains(&&entity[..end]),
                "{rest}"
            );
            rest = &entity[end + 1..];
            continue;
        }
        let end = rest.find('>').expect("a tag ends");
        let tag = &rest[1..end];
        assert!(!tag.contains('<'), "{tag}");
        assert_eq!(tag.matches('"').count() % 2, 0, "{tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "{xml}");
        } else if !tag.ends_with('/') {
            open.push(tag.split(' ').next().unwrap().to_owned());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

fn assert_text(text: &str) {
    assert!(!text.contains('>'), "{text}");
    assert!(
        text.chars().all(|c| c == '\n' || c == '\t' || c >= ' '),
        "{text:?}"
    );
}

#[tokio::test]
async fn lint_checks_test_documents_and_reports_them_with_the_other_errors() {
    let good = folder(&[("t.yaml", &case("main deploys", "42", ALLOWED))]);
    let out = run(vec!["policy".into(), "lint".into(), path(&good)], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("1 issuers, 1 policies, 1 test(s), 0 warning(s)"),
        "{}",
        stdout(&out)
    );

    let tests = [
        case("typo", "42", "  decision: maybe\n"),
        case(
            "names a missing policy",
            "42",
            "  decision: allow\n  policy: api-deploy-prod\n",
        ),
    ]
    .join("---\n");
    let bad = folder(&[
        ("t.yaml", &tests),
        (
            "u.yaml",
            "kind: TrustPolicy\nname: p2\nissuer: gh\nsubject: x\ngrant: {audience: a, ttl: 3h}\n",
        ),
    ]);
    let out = run(vec!["policy".into(), "lint".into(), path(&bad)], None).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("t.yaml:11: expect.decision: unknown variant `maybe`"),
        "{text}"
    );
    assert!(text.contains("u.yaml:5: grant.ttl"), "{text}");
    // With the policies broken, the names a test refers to are not checked.
    assert!(!text.contains("api-deploy-prod"), "{text}");
    std::fs::remove_file(bad.path().join("u.yaml")).unwrap();
    let out = run(vec!["policy".into(), "lint".into(), path(&bad)], None).await;
    let text = stdout(&out);
    assert!(text.contains("t.yaml:11: expect.decision"), "{text}");
    assert!(
        text.contains("t.yaml:24: expect.policy: no TrustPolicy named \"api-deploy-prod\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_broker_and_apply_skip_test_documents() {
    // A broken test document beside the policies: the broker starts and stores no test.
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        POLICIES.replace("{IDP}", "http://127.0.0.1:9"),
    )
    .unwrap();
    std::fs::write(
        policies.join("t.yaml"),
        case("broken", "42", "  decision: maybe\n"),
    )
    .unwrap();
    let db = dir.path().join("b.db");
    Application::build(test_config(&db, &policies), Options::default())
        .await
        .expect("a test document never stops the broker");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let kinds: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT kind FROM documents ORDER BY kind")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kinds, [("Issuer".to_owned(),), ("TrustPolicy".to_owned(),)]);

    // `policy apply` of a folder with tests, and the admin API given one.
    let app = spawn_app().await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("p.yaml"),
        POLICIES.replace("{IDP}", &app.idp.url),
    )
    .unwrap();
    std::fs::write(folder.path().join("t.yaml"), case("a test", "42", DENIED)).unwrap();
    let apply = run(
        vec!["policy".into(), "apply".into(), path(&folder)],
        Some(&app.address),
    )
    .await;
    assert_eq!(apply.status.code(), Some(0), "{}", stdout(&apply));
    assert!(
        stdout(&apply).contains("nothing to apply: 0 document(s)"),
        "{}",
        stdout(&apply)
    );
    let response = app
        .admin(Method::POST, "/apply")
        .json(&json!({"documents": [{"kind": "PolicyTest", "name": "a test"}], "dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["created"], json!([]), "{report}");
}

#[tokio::test]
async fn the_expected_token_is_what_token_really_mints() {
    let app = spawn_app().await;
    let claims = app.idp.claims();
    let response = app
        .exchange(
            &app.idp.token(&claims),
            Some("https://deploy.internal"),
            Some("deploy:write"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let mut issued = claims_of(body["access_token"].as_str().unwrap());
    // Every claim but the jti, which is new for every token.
    issued.as_object_mut().unwrap().remove("jti");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        POLICIES.replace("{IDP}", &app.idp.url),
    )
    .unwrap();
    let test = json!({
        "kind": "PolicyTest",
        "name": "as issued",
        "issuer": "fake",
        "now": issued["iat"],
        "claims": claims,
        "request": {"audience": "https://deploy.internal", "scope": "deploy:write"},
        "expect": {"decision": "allow", "policy": "api-deploy", "reason": "issued", "token": issued},
    });
    std::fs::write(
        dir.path().join("t.yaml"),
        serde_json::to_string_pretty(&test).unwrap(),
    )
    .unwrap();
    // The configuration the broker runs with: its issuer URL, loopback issuers allowed.
    let config = dir.path().join("sts-broker.toml");
    std::fs::write(
        &config,
        format!(
            "issuer_url = \"{}\"\nallow_insecure_loopback_issuers = true\n",
            app.address
        ),
    )
    .unwrap();
    let out = run(
        vec![
            "--config".into(),
            config.display().to_string(),
            "policy".into(),
            "test".into(),
            path(&dir),
        ],
        None,
    )
    .await;
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "ok as issued\n1 passed, 0 failed\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        issued["groups"].is_array() && issued["act"].is_object(),
        "{issued}"
    );
}
