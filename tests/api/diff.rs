//! `policy diff`: exit codes as `git diff --exit-code`, each changed document as a unified
//! diff, against a running broker or its database, and `--impact`.

use crate::cli::{run, stdout};
use crate::helpers::{POLICIES, TestApp, spawn_app};

/// A folder holding `text` (`{IDP}` replaced by the fake issuer's URL).
fn folder(app: &TestApp, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        text.replace("{IDP}", &app.idp.url),
    )
    .unwrap();
    dir
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn database_url(app: &TestApp) -> String {
    app.config.database_url.expose().to_owned()
}

/// A configuration file like the test broker's, for what `--database-url` needs of it (its
/// limits, where its journal is).
fn config_file(app: &TestApp, dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("sts-broker.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = \"{}\"\nallow_insecure_loopback_issuers = true\n",
            database_url(app)
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn diff_exits_0_when_nothing_changes_1_when_something_does_2_on_usage() {
    let app = spawn_app().await;
    let same = folder(&app, POLICIES);
    let d = same.path().display().to_string();
    let out = run(args(&["policy", "diff", &d]), Some(&app.address)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("no document would change"));
    // The same against the database itself, read only.
    let url = database_url(&app);
    let out = run(args(&["policy", "diff", &d, "--database-url", &url]), None).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );

    let changed = folder(
        &app,
        &POLICIES.replace("ttl: 10m", "ttl: 5m").replace(
            "kind: TrustPolicy\nname: branches-read",
            "kind: TrustPolicy\nname: new-one\nissuer: fake\nsubject: repo:acme/new:ref:refs/heads/main\ngrant:\n  audience: [https://new.internal]\n---\nkind: TrustPolicy\nname: branches-read",
        ),
    );
    let d = changed.path().display().to_string();
    for extra in [vec![], vec!["--database-url".to_owned(), url.clone()]] {
        let mut words = args(&["policy", "diff", &d]);
        words.extend(extra);
        let out = run(words, Some(&app.address)).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("--- stored/TrustPolicy/api-deploy\n")
                && text.contains(&format!("+++ {d}/TrustPolicy/api-deploy\n")),
            "{text}"
        );
        assert!(text.contains("\n-  ttl: 10m\n+  ttl: 5m\n"), "{text}");
        assert!(
            text.contains("--- /dev/null\n") && text.contains("+name: new-one\n"),
            "{text}"
        );
        assert!(
            text.contains("2 document(s) would change: 1 created, 1 updated, 0 deleted"),
            "{text}"
        );
    }

    // --prune shows the stored documents the folder lacks as deletions.
    let only_issuer = folder(&app, POLICIES.split("---").next().unwrap());
    let d = only_issuer.path().display().to_string();
    let out = run(args(&["policy", "diff", &d, "--prune"]), Some(&app.address)).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("--- stored/TrustPolicy/branches-read\n+++ /dev/null\n"),
        "{}",
        stdout(&out)
    );

    for usage in [
        args(&["policy", "diff"]),
        args(&["policy", "diff", "/no/such/dir"]),
        args(&["policy", "diff", &d, "--limit", "5"]),
        args(&["policy", "diff", &d, "--impact", "whenever"]),
        args(&["policy", "diff", &d, "--database-url", "mysql://nope"]),
    ] {
        let out = run(usage.clone(), Some(&app.address)).await;
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {}", stdout(&out));
    }
}

#[tokio::test]
async fn impact_shows_the_decisions_that_would_flip_from_the_broker_or_the_database() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    let response = app
        .exchange(&token, Some("https://logs.internal"), None)
        .await;
    assert_eq!(response.status(), 200);
    let logs = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let url = database_url(&app);
    let same = folder(&app, POLICIES);
    let config = config_file(&app, &same);
    let local = vec![
        "--database-url".to_owned(),
        url.clone(),
        "--config".to_owned(),
        config.clone(),
    ];
    let d = same.path().display().to_string();
    for extra in [vec![], local.clone()] {
        let mut words = args(&["policy", "diff", &d, "--impact", "1h"]);
        words.extend(extra);
        let out = run(words, Some(&app.address)).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("1 re-decided, 0 skipped, 0 would change"),
            "{}",
            stdout(&out)
        );
    }

    let narrowed = folder(
        &app,
        &POLICIES.replace(
            "repo:acme/*:ref:refs/heads/*",
            "repo:acme/web:ref:refs/heads/*",
        ),
    );
    let d = narrowed.path().display().to_string();
    for extra in [vec![], local] {
        let mut words = args(&["policy", "diff", &d, "--impact", "1h"]);
        words.extend(extra);
        let out = run(words, Some(&app.address)).await;
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("1 re-decided, 0 skipped, 1 would change"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{logs}: allow branches-read -> deny api-deploy (audience_not_granted)"
            )),
            "{text}"
        );
        assert!(
            text.contains("policy branches-read: 1 lost, 0 gained"),
            "{text}"
        );
    }
    // The broker's decisions were not touched.
    let again = app.idp.token(&app.idp.claims());
    assert_eq!(
        app.exchange(&again, Some("https://logs.internal"), None)
            .await
            .status(),
        200
    );
}
