//! Policy files: the shipped examples load, and a bad file changes nothing.

use std::path::Path;
use std::time::Duration;

use sts_broker::policy::Limits;
use sts_broker::policy::load::Bundle;
use sts_broker::startup::{Application, Options};

use crate::helpers::{POLICIES, test_config};

#[test]
fn every_shipped_policy_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let bundle = Bundle::load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
    let limits = Limits {
        max_ttl: Duration::from_secs(3600),
        allow_insecure_loopback_issuers: false,
        read_app_keys: false,
    };
    let set = bundle
        .compile_over(&[], &[], &limits)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        set.issuers().count() >= 2,
        "GitHub Actions and GitLab examples"
    );
    assert!(set.policies().count() >= 2);
}

#[tokio::test]
async fn an_invalid_policy_file_stops_start_up_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let good = POLICIES.replace("{IDP}", "http://127.0.0.1:9");
    std::fs::write(policies.join("a.yaml"), &good).unwrap();
    let db = dir.path().join("b.db");
    Application::build(test_config(&db, &policies), Options::default())
        .await
        .unwrap();

    // Second file: a valid document, and one with a ttl above max_ttl on its line 9.
    let bad = "kind: TrustPolicy\nname: extra\nissuer: fake\nsubject: x\ngrant: {audience: a}\n---\nkind: TrustPolicy\nname: too-long\nissuer: fake\nsubject: x\ngrant:\n  audience: a\n  ttl: 2h\n";
    std::fs::write(policies.join("b.yaml"), bad).unwrap();
    let err = Application::build(test_config(&db, &policies), Options::default())
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("b.yaml:13:") && text.contains("exceeds max_ttl"),
        "{text}"
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM documents ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        !names.iter().any(|(n,)| n == "extra"),
        "nothing of the bad bundle was applied: {names:?}"
    );
}

#[tokio::test]
async fn removing_a_policy_file_revokes_its_documents_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let text = POLICIES.replace("{IDP}", "http://127.0.0.1:9");
    let (first, rest) = text.split_at(text.find("kind: TrustPolicy\nname: branches-read").unwrap());
    std::fs::write(policies.join("a.yaml"), first).unwrap();
    std::fs::write(policies.join("b.yaml"), rest).unwrap();
    let db = dir.path().join("p.db");
    Application::build(test_config(&db, &policies), Options::default())
        .await
        .unwrap();
    std::fs::remove_file(policies.join("b.yaml")).unwrap();
    Application::build(test_config(&db, &policies), Options::default())
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM documents ORDER BY name")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        names,
        vec![("api-deploy".to_string(),), ("fake".to_string(),)]
    );
    let history: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, body FROM document_versions WHERE name = 'branches-read' ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(history.len(), 2, "created, then deleted");
    assert!(history[1].1.is_none());
}
