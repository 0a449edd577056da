//! Losing the database: no token without a durable audit record. Without a spool the broker
//! fails closed at once; with one it spools locally for the grace period, then fails closed,
//! and copies the spooled records into the database when it answers again.
//!
//! The outage is made by renaming the audit table away (every audit write fails, as with a
//! lost database), which works the same on any machine.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use sts_broker::config::HumanDuration;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

async fn pool(app: &TestApp) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(app.config.database_url.expose())
        .await
        .unwrap()
}

async fn break_audit(app: &TestApp) {
    let pool = pool(app).await;
    sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_away")
        .execute(&pool)
        .await
        .unwrap();
}

async fn repair_audit(app: &TestApp) {
    let pool = pool(app).await;
    sqlx::query("ALTER TABLE audit_events_away RENAME TO audit_events")
        .execute(&pool)
        .await
        .unwrap();
}

/// Exchanges a fresh token; the status and the issued token's request id.
async fn exchange(app: &TestApp) -> (u16, Option<String>, String) {
    let token = app.idp.token(&app.idp.claims());
    let response = app.exchange(&token, None, None).await;
    let status = response.status().as_u16();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    (status, body["access_token"].as_str().map(str::to_owned), id)
}

#[tokio::test]
async fn without_a_spool_exchanges_fail_closed() {
    let app = spawn_app().await;
    assert_eq!(exchange(&app).await.0, 200);
    break_audit(&app).await;
    let (status, token, _) = exchange(&app).await;
    assert_eq!(status, 503);
    assert!(token.is_none(), "no token without an audit record");
    repair_audit(&app).await;
    let (status, token, id) = exchange(&app).await;
    assert_eq!(status, 200, "recovers by itself");
    assert!(token.is_some());
    assert_eq!(app.audit(&id).await.len(), 1);
}

#[tokio::test]
async fn a_spool_covers_the_grace_period_then_copies_into_the_database() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_path_buf();
    let app = spawn_app_with(|c| {
        c.audit_spool_dir = Some(dir.clone());
        c.database_outage_grace = HumanDuration(Duration::from_secs(2));
    })
    .await;
    break_audit(&app).await;
    let mut spooled = Vec::new();
    for _ in 0..3 {
        let (status, token, id) = exchange(&app).await;
        assert_eq!(status, 200, "within grace: served, audit spooled");
        assert!(token.is_some());
        spooled.push(id);
    }
    let file = dir.join("audit-spool.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    for id in &spooled {
        assert!(text.contains(id.as_str()), "{id} is in the spool");
    }
    // Past the grace period: fail closed.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, token, _) = exchange(&app).await;
    assert_eq!(status, 503);
    assert!(token.is_none());

    repair_audit(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut found = 0;
        for id in &spooled {
            found += app.audit(id).await.len();
        }
        if found == spooled.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spooled records reach the database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!file.exists(), "the spool is emptied once copied");
    let (status, _, id) = exchange(&app).await;
    assert_eq!(status, 200);
    let record: Value = app
        .admin(Method::GET, &format!("/audit/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["events"][0]["decision"], "allow", "{record}");
}
