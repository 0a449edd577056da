//! Losing the database: no token without a durable audit record. Without a spool the broker
//! fails closed at once; with one it spools locally for the grace period, then fails closed,
//! and copies the spooled records into the database when it answers again.
//!
//! On SQLite the outage is made by renaming the audit table away (every audit write fails,
//! as with a lost database); on PostgreSQL the database refuses connections and the open
//! ones are terminated.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use sts_broker::config::HumanDuration;

use crate::helpers::{TestApp, jti_of, spawn_app, spawn_app_on, spawn_app_with};
use crate::testdb::TestDb;

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

/// Makes the database unreachable and back: PostgreSQL refuses connections to it and drops
/// the open ones; SQLite loses its audit table.
async fn set_database_down(db: &TestDb, down: bool) {
    if db.backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let (from, to) = match down {
            true => ("audit_events", "audit_events_away"),
            false => ("audit_events_away", "audit_events"),
        };
        let sql = format!("ALTER TABLE {from} RENAME TO {to}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        return;
    }
    let server = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = url::Url::parse(&db.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let pool = sqlx::PgPool::connect(&server).await.unwrap();
    let allow = if down { "false" } else { "true" };
    let sql = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    if down {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// Every issued `jti` the audit trail records as allowed.
async fn audited_jtis(app: &TestApp) -> std::collections::HashSet<String> {
    let mut jtis = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/audit?decision=allow&limit=500".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app
            .admin(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for event in page["events"].as_array().unwrap() {
            jtis.insert(event["issued"]["jti"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return jtis,
        }
    }
}

/// Exchanges run concurrently while the database goes away and comes back: every token that
/// was issued has its audit record, the rest failed closed with 503, and the broker recovers.
#[tokio::test]
async fn no_token_without_an_audit_record_when_the_database_goes_under_load() {
    for db in TestDb::all("database outage under load").await {
        let app = std::sync::Arc::new(spawn_app_on(&db.url, |_| {}).await);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..6 {
            let (app, stop) = (app.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (status, token, _) = exchange(&app).await;
                    seen.push((status, token));
                }
                seen
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        set_database_down(&db, true).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        set_database_down(&db, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Back: exchanges succeed again (the pool reconnects by itself).
        let deadline = Instant::now() + Duration::from_secs(15);
        while exchange(&app).await.0 != 200 {
            assert!(Instant::now() < deadline, "{}: no recovery", db.backend);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut issued = Vec::new();
        let mut refused = 0;
        for worker in workers {
            for (status, token) in worker.await.unwrap() {
                match (status, token) {
                    (200, Some(token)) => issued.push(jti_of(&token)),
                    (503, None) => refused += 1,
                    other => panic!("{}: unexpected answer {other:?}", db.backend),
                }
            }
        }
        assert!(refused > 0, "{}: the outage was felt", db.backend);
        assert!(!issued.is_empty(), "{}", db.backend);
        let audited = audited_jtis(&app).await;
        let missing: Vec<_> = issued.iter().filter(|j| !audited.contains(*j)).collect();
        assert!(
            missing.is_empty(),
            "{}: tokens without audit records: {missing:?}",
            db.backend
        );
        assert_eq!(app.get("/readyz").await.status(), 200, "{}", db.backend);
        eprintln!(
            "{}: {} issued, {refused} refused during the outage",
            db.backend,
            issued.len()
        );
    }
}
