//! The storage contract, checked on every backend: SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set. Each check gets fresh databases.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sts_broker::audit::{AuditEvent, AuditFilter, Decision};
use sts_broker::config::SigningAlgorithm;
use sts_broker::mint::sealing::Kek;
use sts_broker::mint::{KeyManager, KeyPolicy};
use sts_broker::policy::Kind;
use sts_broker::storage::{
    self, Change, DocumentChange, KeyState, Storage, StorageError, StoredKey, StoredRevocation,
};

use crate::testdb::TestDb;

/// Runs `check` on a fresh database of every configured backend.
async fn on_every_backend<F, Fut>(test: &str, check: F)
where
    F: Fn(Arc<dyn Storage>, &'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in TestDb::all(test).await {
        let store = storage::connect(&db.url)
            .await
            .expect("connects and migrates");
        check(store, db.backend).await;
    }
}

fn issuer(name: &str, audience: &str) -> serde_json::Value {
    json!({"name": name, "url": format!("https://{name}.example"), "audiences": [audience]})
}

fn put(name: &str, body: Option<serde_json::Value>, expected: Option<i64>) -> DocumentChange {
    DocumentChange {
        kind: Kind::Issuer,
        name: name.into(),
        body: body.map(|b| b.to_string()),
        expected_version: expected,
    }
}

#[tokio::test]
async fn documents_are_versioned_conditional_and_keep_history() {
    on_every_backend("documents_are_versioned…", |store, backend| async move {
        let created = store
            .apply_documents(&[put("b", Some(issuer("b", "x")), Some(0))], "alice", 100)
            .await
            .unwrap();
        assert_eq!(created, 1, "{backend}");
        let same = store
            .apply_documents(&[put("b", Some(issuer("b", "x")), None)], "bob", 101)
            .await
            .unwrap();
        assert_eq!(same, 0, "{backend}: an identical body is no change");
        let stale = store
            .apply_documents(&[put("b", Some(issuer("b", "y")), Some(0))], "bob", 102)
            .await;
        assert!(
            matches!(stale, Err(StorageError::Conflict { .. })),
            "{backend}"
        );
        store
            .apply_documents(
                &[
                    put("b", Some(issuer("b", "y")), Some(1)),
                    put("a", Some(issuer("a", "z")), None),
                ],
                storage::FILES_ACTOR,
                103,
            )
            .await
            .unwrap();
        let b = store.document(Kind::Issuer, "b").await.unwrap().unwrap();
        assert_eq!((b.version, b.updated_at), (2, 103), "{backend}");
        assert_eq!(b.body, issuer("b", "y"), "{backend}");
        let names: Vec<String> = store
            .list_documents(Kind::Issuer)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["a", "b"], "{backend}: name order");
        let docs = store.documents().await.unwrap();
        assert_eq!(docs.issuers.len(), 2, "{backend}");
        assert_eq!(docs.from_files.len(), 2, "{backend}");
        store
            .apply_documents(&[put("b", None, Some(2))], "alice", 104)
            .await
            .unwrap();
        assert!(store.document(Kind::Issuer, "b").await.unwrap().is_none());
        let history = store.history(Kind::Issuer, "b").await.unwrap();
        let versions: Vec<(i64, bool, &str)> = history
            .iter()
            .map(|v| (v.version, v.body.is_some(), v.changed_by.as_str()))
            .collect();
        assert_eq!(
            versions,
            [
                (1, true, "alice"),
                (2, true, storage::FILES_ACTOR),
                (3, false, "alice")
            ],
            "{backend}"
        );
        // All or nothing: a conflict in the second change undoes the first.
        let mixed = store
            .apply_documents(
                &[
                    put("c", Some(issuer("c", "x")), None),
                    put("a", None, Some(9)),
                ],
                "alice",
                105,
            )
            .await;
        assert!(
            matches!(mixed, Err(StorageError::Conflict { .. })),
            "{backend}"
        );
        assert!(
            store.document(Kind::Issuer, "c").await.unwrap().is_none(),
            "{backend}"
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_of_one_document_one_wins() {
    on_every_backend(
        "concurrent_creates_of_one_document…",
        |store, backend| async move {
            let attempts = (0..4).map(|i| {
                let store = store.clone();
                async move {
                    let body = issuer("race", &format!("aud-{i}"));
                    store
                        .apply_documents(&[put("race", Some(body), Some(0))], "w", 100)
                        .await
                }
            });
            let results = futures_util::future::join_all(attempts).await;
            let won = results.iter().filter(|r| r.is_ok()).count();
            let conflicts = results
                .iter()
                .filter(|r| matches!(r, Err(StorageError::Conflict { .. })))
                .count();
            assert_eq!((won, conflicts), (1, 3), "{backend}: {results:?}");
            assert_eq!(store.history(Kind::Issuer, "race").await.unwrap().len(), 1);
        },
    )
    .await;
}

fn event(request_id: &str, time: i64, decision: Decision, policy: &str) -> AuditEvent {
    AuditEvent {
        request_id: request_id.into(),
        time,
        kind: sts_broker::audit::AuditKind::Exchange,
        decision: Some(decision),
        reason: "test".into(),
        client_addr: Some("127.0.0.1".into()),
        policy: Some(policy.into()),
        inbound_iss: Some("https://i.example".into()),
        inbound_sub: Some(format!("sub-{policy}")),
        inbound_jti: None,
        issued_jti: None,
        issued_exp: Some(time + 60),
        detail: json!({"trace": [{"policy": policy, "checks": [1, 2.5, "x"]}]}),
        claims_text: None,
    }
}

#[tokio::test]
async fn audit_queries_filter_and_page_newest_first() {
    on_every_backend("audit_queries_filter…", |store, backend| async move {
        let events: Vec<AuditEvent> = (0..7)
            .map(|i| {
                let decision = if i % 2 == 0 {
                    Decision::Allow
                } else {
                    Decision::Deny
                };
                event(
                    &format!("r{i}"),
                    1000 + i,
                    decision,
                    if i < 4 { "p1" } else { "p2" },
                )
            })
            .collect();
        store.append_audit(&events).await.unwrap();
        let query = |f: AuditFilter| {
            let store = store.clone();
            async move { store.query_audit(&f).await.unwrap() }
        };
        let ids = |records: &[sts_broker::storage::AuditRow]| -> Vec<String> {
            records.iter().map(|r| r.event.request_id.clone()).collect()
        };
        let all = query(AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await;
        assert_eq!(
            ids(&all),
            ["r6", "r5", "r4", "r3", "r2", "r1", "r0"],
            "{backend}"
        );
        assert_eq!(
            all[0].event.detail, events[6].detail,
            "{backend}: detail round-trips"
        );
        let filtered = query(AuditFilter {
            since: Some(1001),
            until: Some(1006),
            decision: Some(Decision::Allow),
            policy: Some("p2".into()),
            subject: Some("sub-p2".into()),
            reason: Some("test".into()),
            kind: Some(sts_broker::audit::AuditKind::Exchange),
            limit: 100,
            ..Default::default()
        })
        .await;
        assert_eq!(ids(&filtered), ["r4"], "{backend}");
        let page1 = query(AuditFilter {
            limit: 3,
            ..Default::default()
        })
        .await;
        let page2 = query(AuditFilter {
            limit: 3,
            before_id: Some(page1.last().unwrap().id),
            ..Default::default()
        })
        .await;
        assert_eq!(ids(&page2), ["r3", "r2", "r1"], "{backend}");
        let one = store.audit_by_request("r5").await.unwrap();
        assert_eq!(one.len(), 1, "{backend}");
        let one = &one[0].event;
        assert_eq!(one.decision, Some(Decision::Deny), "{backend}");
        assert_eq!(one.issued_exp, Some(1065), "{backend}");
    })
    .await;
}

fn key(kid: &str, state: &str, created_at: i64) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        private_key: vec![0, 1, 2, 255],
        sealed: false,
        state: KeyState::parse(state).unwrap(),
        created_at,
        activated_at: (state == "active").then_some(created_at),
        retired_at: None,
    }
}

fn states(keys: &[StoredKey]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (k.kid.clone(), k.state.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn replacing_signing_keys_forgets_every_old_one() {
    on_every_backend("replacing_signing_keys…", |store, backend| async move {
        for k in [key("old-a", "active", 10), key("old-n", "next", 10)] {
            store.insert_signing_key(&k).await.unwrap();
        }
        let mut removed = store
            .replace_signing_keys(&key("new-a", "active", 20), &key("new-n", "next", 20))
            .await
            .unwrap();
        removed.sort();
        assert_eq!(removed, ["old-a", "old-n"], "{backend}");
        let mut now = states(&store.signing_keys().await.unwrap());
        now.sort();
        assert_eq!(
            now,
            [
                ("new-a".to_owned(), "active".to_owned()),
                ("new-n".to_owned(), "next".to_owned())
            ],
            "{backend}"
        );
    })
    .await;
}

#[tokio::test]
async fn signing_keys_rotate_once_and_keep_one_active_and_one_next() {
    on_every_backend("signing_keys_rotate_once…", |store, backend| async move {
        store
            .insert_signing_key(&key("k1", "active", 10))
            .await
            .unwrap();
        store
            .insert_signing_key(&key("k2", "next", 11))
            .await
            .unwrap();
        for duplicate in [key("k3", "active", 12), key("k3", "next", 12)] {
            let refused = store.insert_signing_key(&duplicate).await;
            assert!(
                matches!(refused, Err(StorageError::Conflict { .. })),
                "{backend}: a second {} key: {refused:?}",
                duplicate.state.as_str()
            );
        }
        // Both replicas due at once: the same rotation, twice, concurrently.
        let (k3, k4) = (key("k3", "next", 20), key("k4", "next", 20));
        let (a, b) = tokio::join!(
            store.rotate_signing_keys("k1", "k2", &k3, 20),
            store.rotate_signing_keys("k1", "k2", &k4, 20),
        );
        let results = [a, b];
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{backend}: {results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StorageError::Conflict { .. }))),
            "{backend}"
        );
        let keys = store.signing_keys().await.unwrap();
        let winner = &keys.iter().find(|k| k.state == KeyState::Next).unwrap().kid;
        assert_eq!(
            states(&keys),
            [
                ("k1".to_string(), "retired".to_string()),
                ("k2".into(), "active".into()),
                (winner.clone(), "next".into())
            ],
            "{backend}"
        );
        assert_eq!(keys[0].retired_at, Some(20), "{backend}");
        assert_eq!(keys[1].activated_at, Some(20), "{backend}");
        store.reseal_signing_key("k1", &[9, 9]).await.unwrap();
        store.delete_signing_key(winner).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        assert_eq!(
            (keys[0].private_key.as_slice(), keys[0].sealed),
            (&[9u8, 9][..], true)
        );
        assert_eq!(keys.len(), 2, "{backend}");
    })
    .await;
}

fn manager() -> KeyManager {
    KeyManager::new(
        Kek::development(),
        KeyPolicy {
            alg: SigningAlgorithm::ES256,
            max_ttl: Duration::from_secs(3600),
            publish_lead: Duration::from_secs(60),
            rotation_period: Duration::from_secs(600),
        },
    )
}

#[tokio::test]
async fn replicas_starting_and_rotating_at_once_create_and_rotate_keys_once() {
    on_every_backend(
        "replicas_starting_and_rotating_at_once…",
        |store, backend| async move {
            let (a, b) = (manager(), manager());
            let (ring_a, ring_b) = tokio::join!(a.load(&*store, 1000), b.load(&*store, 1000));
            assert_eq!(
                ring_a.unwrap().active.kid,
                ring_b.unwrap().active.kid,
                "{backend}: both sign with one key"
            );
            let keys = store.signing_keys().await.unwrap();
            assert_eq!(keys.len(), 2, "{backend}: {:?}", states(&keys));
            let due = 1000 + 600;
            let (ra, rb) =
                tokio::join!(a.rotate_if_due(&*store, due), b.rotate_if_due(&*store, due));
            let rotated = [ra.unwrap(), rb.unwrap()];
            assert_eq!(
                rotated.iter().filter(|r| r.is_some()).count(),
                1,
                "{backend}"
            );
            let keys = store.signing_keys().await.unwrap();
            let mut kinds: Vec<&str> = keys.iter().map(|k| k.state.as_str()).collect();
            kinds.sort();
            assert_eq!(kinds, ["active", "next", "retired"], "{backend}");
        },
    )
    .await;
}

#[tokio::test]
async fn a_jti_is_consumed_once_among_concurrent_callers() {
    on_every_backend("a_jti_is_consumed_once…", |store, backend| async move {
        let attempts = (0..16).map(|_| store.consume_jti("iss", "jti-1", 500));
        let results = futures_util::future::join_all(attempts).await;
        let firsts = results.iter().filter(|r| matches!(r, Ok(true))).count();
        assert_eq!(firsts, 1, "{backend}: {results:?}");
        assert!(results.iter().all(Result::is_ok), "{backend}");
        assert!(
            store.consume_jti("other-iss", "jti-1", 500).await.unwrap(),
            "{backend}"
        );
        assert_eq!(
            store.purge_jtis(500).await.unwrap(),
            0,
            "{backend}: not yet expired"
        );
        assert_eq!(store.purge_jtis(501).await.unwrap(), 2, "{backend}");
        assert!(
            store.consume_jti("iss", "jti-1", 900).await.unwrap(),
            "{backend}"
        );
    })
    .await;
}

#[tokio::test]
async fn revocations_are_kept_until_they_expire() {
    on_every_backend("revocations_are_kept…", |store, backend| async move {
        let rule = |jti: Option<&str>, policy: Option<&str>, expires_at| StoredRevocation {
            jti: jti.map(Into::into),
            policy: policy.map(Into::into),
            subject: None,
            issued_since: 0,
            issued_until: 100,
            expires_at,
            created_at: 100,
            created_by: "admin".into(),
            reason: Some("leaked".into()),
        };
        let short = rule(Some("j1"), None, 200);
        let long = rule(None, Some("deploy"), 400);
        store.insert_revocation(&short).await.unwrap();
        store.insert_revocation(&long).await.unwrap();
        assert_eq!(
            store.revocations(200).await.unwrap(),
            [short, long.clone()],
            "{backend}"
        );
        assert_eq!(store.revocations(201).await.unwrap(), [long], "{backend}");
        store.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_replicas_migrate_a_fresh_database_at_once() {
    let Some(db) = TestDb::postgres("postgres_replicas_migrate…").await else {
        return;
    };
    // Without the migrator's advisory lock both would create the same tables and one fail.
    let starts = (0..3).map(|_| storage::connect(&db.url));
    for started in futures_util::future::join_all(starts).await {
        started.expect("every replica starts").ping().await.unwrap();
    }
}

/// The pool's 10 s statement timeout must not cut a migration short: a replica starting
/// while another migrates (or while an index is built on a large audit table) waits.
#[tokio::test]
async fn postgres_migrations_may_outlast_the_statement_timeout() {
    use sqlx::{Connection, Executor};
    let Some(db) = TestDb::postgres("postgres_migrations_may_outlast…").await else {
        return;
    };
    storage::connect(&db.url)
        .await
        .expect("first start migrates");
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let hold = std::time::Duration::from_millis(10_500);
    let started = std::time::Instant::now();
    let (start, ()) = tokio::join!(
        async {
            let result = storage::connect(&db.url).await.map(|_| ());
            (result, started.elapsed())
        },
        async {
            tokio::time::sleep(hold).await;
            holder.execute("COMMIT").await.unwrap();
        }
    );
    let (result, took) = start;
    result.expect("starts once the lock is released");
    assert!(
        took >= hold,
        "the start waited for the migration lock ({took:?})"
    );
}

#[tokio::test]
async fn postgres_changes_reach_other_brokers() {
    let Some(db) = TestDb::postgres("postgres_changes_reach_other_brokers").await else {
        return;
    };
    let a = storage::connect(&db.url).await.unwrap();
    let b = storage::connect(&db.url).await.unwrap();
    let mut feed = b.subscribe().await.unwrap().expect("PostgreSQL has a feed");
    let mut expect = async |change: Change| {
        let started = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(3), feed.recv()).await;
        assert_eq!(got, Ok(Some(change)));
        println!("{change:?} arrived in {:?}", started.elapsed());
    };
    a.apply_documents(&[put("n", Some(issuer("n", "x")), None)], "a", 1)
        .await
        .unwrap();
    expect(Change::Documents).await;
    a.insert_revocation(&StoredRevocation {
        jti: Some("j".into()),
        policy: None,
        subject: None,
        issued_since: 0,
        issued_until: 1,
        expires_at: i64::MAX,
        created_at: 1,
        created_by: "a".into(),
        reason: None,
    })
    .await
    .unwrap();
    expect(Change::Revocations).await;
    a.insert_signing_key(&key("k", "active", 1)).await.unwrap();
    expect(Change::Keys).await;
    // A write that changes nothing, and a failed one, announce nothing.
    a.apply_documents(&[put("n", Some(issuer("n", "x")), None)], "a", 2)
        .await
        .unwrap();
    a.insert_signing_key(&key("k2", "active", 2))
        .await
        .unwrap_err();
    a.delete_signing_key("k").await.unwrap();
    expect(Change::Keys).await;
}

#[tokio::test]
async fn sqlite_has_no_change_feed() {
    let db = TestDb::sqlite();
    let store = storage::connect(&db.url).await.unwrap();
    assert!(store.subscribe().await.unwrap().is_none());
    assert!(matches!(
        storage::connect("mysql://localhost/x").await,
        Err(StorageError::Unsupported)
    ));
}

/// Records of concurrent exchanges share commits (the point of group commit), every one is
/// stored, and each caller returns only once its own record is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_audit_records_are_group_committed() {
    on_every_backend("concurrent_audit_records…", |store, _| async move {
        let metrics = Arc::new(sts_broker::metrics::Metrics::new());
        let options = sts_broker::trail::TrailOptions {
            durable_write: sts_broker::trail::DurableWrite::Database(
                sts_broker::journal::Durability::Fsync,
            ),
            retention: Duration::from_secs(86400),
        };
        let (writer, _) = sts_broker::trail::start(options, store.clone(), metrics.clone())
            .await
            .unwrap();
        let records = (0..64).map(|i| {
            let writer = writer.clone();
            let store = store.clone();
            async move {
                let id = format!("g{i}");
                writer
                    .record(event(&id, 1_000 + i, Decision::Allow, "p"))
                    .await
                    .unwrap();
                assert_eq!(store.audit_by_request(&id).await.unwrap().len(), 1);
            }
        });
        futures_util::future::join_all(records).await;
        let text = metrics.render();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(value("sts_audit_batch_size_sum"), 64.0);
        let commits = value("sts_audit_batch_size_count");
        assert!(
            commits < 64.0,
            "{commits} commits for 64 concurrent records"
        );
    })
    .await;
}

/// A reader that has seen audit id N must never later find a new record below N: paging
/// and tailing by id would skip it. A trigger holds one batch open after its id is drawn
/// while a second batch commits; the second must not become visible first.
#[tokio::test]
async fn postgres_audit_ids_are_visible_in_commit_order() {
    use sqlx::{Connection, Executor};
    let Some(db) = TestDb::postgres("postgres_audit_ids_are_visible…").await else {
        return;
    };
    let store = storage::connect(&db.url).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    admin
        .execute(
            "CREATE FUNCTION slow_audit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(0.6); RETURN NEW; END $$;
             CREATE TRIGGER slow_audit BEFORE INSERT ON audit_events FOR EACH ROW
             WHEN (NEW.request_id = 'slow') EXECUTE FUNCTION slow_audit();",
        )
        .await
        .unwrap();
    let newest_first = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    let slow_batch = [event("slow", 1, Decision::Allow, "p")];
    let (slow, fast, seen_meanwhile) = tokio::join!(
        store.append_audit(&slow_batch),
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            store
                .append_audit(&[event("fast", 2, Decision::Allow, "p")])
                .await
        },
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            store.query_audit(&newest_first).await.unwrap()
        }
    );
    slow.unwrap();
    fast.unwrap();
    let newest_seen = seen_meanwhile.iter().map(|r| r.id).max();
    let all = store.query_audit(&newest_first).await.unwrap();
    assert_eq!(all.len(), 2);
    for record in &all {
        let seen = seen_meanwhile.iter().any(|r| r.id == record.id);
        assert!(
            seen || newest_seen.is_none_or(|newest| record.id > newest),
            "{} (id {}) appeared below id {newest_seen:?}, which a reader had already seen",
            record.event.request_id,
            record.id
        );
    }
}
