//! The audit journal as the durable write: no token without a durable record, whatever
//! fails. The database going away does not stop exchanges when the journal holds the records
//! (they are indexed when it returns); a journal that cannot be written fails closed and
//! recovers by itself; `kill -9` under load loses no acknowledged record and indexes none
//! twice; damage before the journal's tail refuses to start.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::end_to_end::{
    audit_records, exchange_at, restart_broker, start_broker_configured, start_broker_with,
};
use crate::helpers::{FakeIdp, POLICIES, TestApp, jti_of, spawn_app_on, spawn_app_with};
use crate::testdb::TestDb;

/// An answer: status, the token when issued, the request id.
type Answer = (u16, Option<String>, String);

/// Exchanges a fresh token.
async fn exchange(app: &TestApp) -> Answer {
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

/// Makes the database unreachable and back: PostgreSQL refuses connections to it and drops
/// the open ones; SQLite loses its audit table (every index write fails).
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

/// Exchanges from `workers` tasks until `stop`: every answer (status, token, request id).
fn load(
    app: &Arc<TestApp>,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    (0..workers)
        .map(|_| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    seen.push(exchange(&app).await);
                }
                seen
            })
        })
        .collect()
}

/// Waits until every request in `ids` has its one record, or fails after `within`.
async fn wait_audited(app: &TestApp, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    let mut missing: Vec<&String> = ids.iter().collect();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for id in missing {
            match app.audit_records(id).await.len() {
                0 => still.push(id),
                1 => {}
                n => panic!("request {id} has {n} audit records"),
            }
        }
        missing = still;
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} requests still without their record",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The database goes away under load and comes back. With the journal as the durable write
/// (SQLite; PostgreSQL with `audit_journal_dir`) exchanges go on and are indexed when it
/// returns; with the database commit as the durable write (PostgreSQL by default) they fail
/// closed with 503 meanwhile. Either way: every 200 has its record, once.
#[tokio::test]
async fn a_database_outage_under_load_loses_no_record() {
    let journal_dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(TestDb, Option<PathBuf>)> = Vec::new();
    for db in TestDb::all("database outage under load").await {
        cases.push((db, None));
    }
    if let Some(db) = TestDb::postgres("database outage with a journal").await {
        cases.push((db, Some(journal_dir.path().join("j"))));
    }
    for (db, journal) in cases {
        let journaled = db.backend == "sqlite" || journal.is_some();
        let label = format!(
            "{} {}",
            db.backend,
            if journaled { "+ journal" } else { "" }
        );
        let app = Arc::new(spawn_app_on(&db.url, |c| c.audit_journal_dir = journal.clone()).await);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(&app, 6, &stop);
        tokio::time::sleep(Duration::from_millis(400)).await;
        set_database_down(&db, true).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let during = app.get("/readyz").await;
        let readiness: Value = during.json().await.unwrap();
        let (failures, behind) = (
            metric(&app, "sts_audit_index_failures_total").await,
            metric(&app, "sts_audit_index_behind").await,
        );
        set_database_down(&db, false).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while exchange(&app).await.0 != 200 {
            assert!(Instant::now() < deadline, "{label}: no recovery");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::SeqCst);
        let (mut issued, mut refused) = (Vec::new(), Vec::new());
        for worker in workers {
            for (status, token, id) in worker.await.unwrap() {
                match (status, token) {
                    (200, Some(token)) => issued.push((id, token)),
                    (503, None) => refused.push(id),
                    other => panic!("{label}: unexpected answer {other:?}"),
                }
            }
        }
        match journaled {
            true => assert!(refused.is_empty(), "{label}: {} refused", refused.len()),
            false => assert!(!refused.is_empty(), "{label}: the outage was felt"),
        }
        if journaled && db.backend != "sqlite" {
            // PostgreSQL unreachable, the journal writable: degraded, still serving.
            assert_eq!(readiness["audit"], "journaled", "{label}: {readiness}");
        }
        if journaled {
            // Operators see the index fall behind, and catch up.
            assert!(failures > 0.0, "{label}: index failures {failures}");
            assert!(behind > 0.0, "{label}: records behind {behind}");
        }
        let ids: Vec<String> = issued.iter().map(|(id, _)| id.clone()).collect();
        wait_audited(&app, &ids, Duration::from_secs(20)).await;
        if journaled {
            let deadline = Instant::now() + Duration::from_secs(10);
            while metric(&app, "sts_audit_index_behind").await > 0.0 {
                assert!(Instant::now() < deadline, "{label}: the index stays behind");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (id, token) in issued.iter().take(20) {
            let record = &app.audit_records(id).await[0];
            assert_eq!(record["issued"]["jti"], jti_of(token), "{label}");
        }
        for id in refused.iter().take(20) {
            assert!(
                app.audit_records(id)
                    .await
                    .iter()
                    .all(|r| r["decision"] != "allow"),
                "{label}: a 503 has no record of issue"
            );
        }
        assert_eq!(app.get("/readyz").await.status(), 200, "{label}");
        eprintln!(
            "{label}: {} issued, {} refused",
            issued.len(),
            refused.len()
        );
    }
}

/// A metric's value on the broker's `/metrics` page (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    app.metrics_page()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Root can mount a small file system; others cannot, and say so.
fn small_file_system(dir: &Path, size: &str) -> Option<Mount> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: not root, cannot mount a small file system for the full-disk test");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED: mounting a tmpfs failed");
        return None;
    }
    Some(Mount(dir.to_owned()))
}

/// Unmounts when the test ends, however it ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system at `dir` with one file, leaving about `leave` bytes.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let free = rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail * s.f_frsize)
        .unwrap();
    let filler = dir.join("filler");
    let file = std::fs::File::create(&filler).unwrap();
    let _ = rustix::fs::fallocate(
        &file,
        rustix::fs::FallocateFlags::empty(),
        0,
        free.saturating_sub(leave),
    );
    filler
}

/// A journal that cannot be written (a full disk, a removed directory) fails closed: 503,
/// `/readyz` not ready, no token; it recovers by itself once writing works again. No 503
/// leaves a record of issue; every 200 has its record.
#[tokio::test]
async fn an_unwritable_journal_fails_closed_and_recovers_by_itself() {
    let base = tempfile::tempdir().unwrap();
    let journal = base.path().join("journal");
    let Some(_mount) = small_file_system(&journal, "4m") else {
        return;
    };
    let app = spawn_app_with(|c| {
        c.audit_journal_dir = Some(journal.clone());
        c.audit_journal_segment_size = 64 * 1024;
    })
    .await;
    assert_eq!(exchange(&app).await.0, 200);
    let filler = fill(&journal, 16 * 1024);
    // The open segment still has room; once it is full, no next one can be made.
    let (mut issued, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let (status, token, id) = exchange(&app).await;
        match (status, token) {
            (200, Some(_)) => issued.push(id),
            (503, None) => {
                refused.push(id);
                break;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(refused.len(), 1, "the full disk was felt");
    assert_eq!(app.get("/readyz").await.status(), 503);
    let (status, _, id) = exchange(&app).await;
    assert_eq!(status, 503, "still full");
    refused.push(id);
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.status() != 200 {
        assert!(Instant::now() < deadline, "ready again once there is room");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, id) = exchange(&app).await;
    assert_eq!(status, 200);
    issued.push(id);
    // Every exchange answered 200 before, during and after the full disk has its record.
    wait_audited(&app, &issued, Duration::from_secs(10)).await;
    let before_removal = issued.len();

    // The journal's files removed under the broker (its folder emptied): the open segment
    // takes records into nothing, so that group is refused; the next starts a new segment.
    for entry in std::fs::read_dir(&journal).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let (status, _, id) = exchange(&app).await;
    assert_eq!(status, 503, "records cannot go into a removed file");
    refused.push(id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, id) = exchange(&app).await;
        if status == 200 {
            issued.push(id);
            break;
        }
        refused.push(id);
        assert!(Instant::now() < deadline, "writes resume in the folder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_audited(&app, &issued[before_removal..], Duration::from_secs(10)).await;
    for id in &refused {
        assert!(
            app.audit_records(id).await.is_empty(),
            "a 503 ({id}) left no record"
        );
    }
}

/// `kill -9` while exchanges run, five times over the same files: after each restart every
/// exchange that was answered 200 has its record, exactly once.
#[cfg(unix)]
#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_record() {
    let idp = Arc::new(FakeIdp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, url) = start_broker_with(&idp, dir.path(), POLICIES).await;
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (idp, url, stop) = (idp.clone(), url.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut issued = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(response) = exchange_at(&client, &url, &idp).await else {
                            break;
                        };
                        if response.status() != 200 {
                            continue;
                        }
                        let id = response.headers()["x-request-id"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        let Ok(body) = response.json::<Value>().await else {
                            break;
                        };
                        issued.push((id, body["access_token"].as_str().unwrap().to_owned()));
                    }
                    issued
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        broker.0.kill().unwrap();
        broker.0.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        for worker in workers {
            acknowledged.extend(worker.await.unwrap());
        }
        broker = restart_broker(dir.path(), &url).await;
    }
    assert!(acknowledged.len() > 20, "{} exchanges", acknowledged.len());
    let mut seen = HashSet::new();
    for (id, token) in &acknowledged {
        let records = audit_records(&url, id).await;
        assert_eq!(records.len(), 1, "request {id}: {records:?}");
        assert_eq!(records[0]["issued"]["jti"], jti_of(token));
        assert!(
            seen.insert(records[0]["id"].as_i64().unwrap()),
            "one row each"
        );
    }
    eprintln!(
        "{} acknowledged exchanges over 5 kill -9, all audited once",
        acknowledged.len()
    );
}

/// Damage before the journal's tail (here in an older segment that was never indexed)
/// refuses to start and names the file and the offset; a torn tail (garbage after the last
/// frame, as a crash mid-write leaves) is cut and the broker starts.
#[cfg(unix)]
#[tokio::test]
async fn journal_damage_refuses_to_start_and_a_torn_tail_does_not() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "audit_journal_segment_size = 65536\n";
    let (mut broker, url) = start_broker_configured(&idp, dir.path(), POLICIES, extra).await;
    let config = dir.path().join("sts-broker.toml");
    let journal = dir.path().join("audit-journal");
    // Enough exchanges for a few small segments, none indexed (the index table is away).
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_away")
        .execute(&pool)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let segments = || std::fs::read_dir(&journal).unwrap().count();
    let before = segments();
    while segments() < before + 2 {
        let response = exchange_at(&client, &url, &idp).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();
    sqlx::query("ALTER TABLE audit_events_away RENAME TO audit_events")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let mut names: Vec<PathBuf> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let last = names.last().unwrap().clone();
    // A torn tail first: garbage after the last frame. The broker starts.
    let end = written_end(&last);
    write_at(&last, end, &[0xAB; 500]);
    let started = restart_broker(dir.path(), &url).await;
    drop(started);
    // Damage in an older segment that the index has not read: refuses to start. (That start
    // indexed everything, so the index is emptied of the journal's records first.)
    let damaged = names[names.len() - 2].clone();
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("DELETE FROM audit_journal_marks")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE journal_position IS NOT NULL")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    write_at(&damaged, FRAMES_START + 40, &[0x5A; 8]);
    let output = Command::new(env!("CARGO_BIN_EXE_sts-broker"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("STS_BROKER_CONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success(), "a damaged journal must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let name = damaged.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(name) && stderr.contains(&format!("offset {FRAMES_START}")),
        "names the file and offset:\n{stderr}"
    );
}

/// Acknowledged records the index already holds, then lost from the journal (damage near its
/// end is cut as if it were a torn tail; a folder restored from an older copy): starting
/// would number new records with numbers the index holds. The broker refuses, and says what
/// to do.
#[tokio::test]
async fn an_index_ahead_of_its_journal_refuses_to_start() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, url) = start_broker_configured(&idp, dir.path(), POLICIES, "").await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = exchange_at(&client, &url, &idp).await.unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        // Indexed: the index's mark is past this record.
        assert_eq!(audit_records(&url, &id).await.len(), 1);
    }
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();

    let journal = dir.path().join("audit-journal");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let last = names.last().unwrap();
    let frames = frame_starts(last);
    // The last group's frame, acknowledged and indexed, damaged: cut as a torn tail.
    write_at(last, *frames.last().unwrap() + 40, &[0x5A; 8]);
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sts-broker"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sts-broker.toml"))
        .env_remove("STS_BROKER_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A broker that starts anyway serves until killed: give it a deadline, not forever.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            serve.kill().unwrap();
            serve.wait().unwrap();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = serve.wait_with_output().unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "must not start behind its index"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("acknowledged are missing") && stderr.contains("audit-journal"),
        "says what is wrong and where:\n{stderr}"
    );
}

/// Where a segment's first frame starts: the page after its header. Frames start on pages.
const FRAMES_START: u64 = 4096;

/// Where the frames of a segment start, and (last) where they end: the first all-zero
/// frame header.
fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut offset = FRAMES_START as usize;
    loop {
        offsets.push(offset as u64);
        let header = &bytes[offset..offset + 32];
        if header.iter().all(|&b| b == 0) {
            return offsets;
        }
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        offset = (offset + 32 + len).div_ceil(4096) * 4096;
    }
}

/// Where the frames of a segment end.
fn written_end(path: &Path) -> u64 {
    *frame_offsets(path).last().unwrap()
}

/// Where each written frame of a segment starts.
fn frame_starts(path: &Path) -> Vec<u64> {
    let mut offsets = frame_offsets(path);
    offsets.pop();
    offsets
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// `audit_durability` takes `fsync` or `os`; anything else refuses to start, naming the key.
#[test]
fn an_unknown_audit_durability_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sts-broker"))
        .args(["serve"])
        .current_dir(dir.path())
        .env_remove("STS_BROKER_CONFIG")
        .env("STS_BROKER_AUDIT_DURABILITY", "eventually")
        .env("STS_BROKER_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("audit_durability"),
        "{stderr}"
    );
}
