//! The representative exchange, admin and audit flows of the SQLite suite, on PostgreSQL
//! (each on a fresh database). Skipped, saying so, without `TEST_DATABASE_URL`.

use crate::helpers::spawn_app_on;
use crate::testdb::TestDb;
use crate::{admin, exchange};

/// Runs `flow` against a broker on a fresh PostgreSQL database.
macro_rules! on_postgres {
    ($name:ident, $flow:path) => {
        #[tokio::test]
        async fn $name() {
            let Some(db) = TestDb::postgres(stringify!($name)).await else {
                return;
            };
            $flow(spawn_app_on(&db.url, |_| {}).await).await;
        }
    };
}

on_postgres!(
    issued_token_verifies,
    exchange::issued_token_verifies_with_the_published_keys_on
);
on_postgres!(
    denials_are_audited,
    exchange::every_denial_is_audited_with_the_request_id_on
);
on_postgres!(
    documents_take_effect_at_once,
    admin::documents_are_validated_like_files_and_take_effect_at_once_on
);
on_postgres!(
    concurrent_edits_one_wins,
    admin::concurrent_edits_one_wins_one_gets_412_on
);
on_postgres!(
    audit_trail_filters_and_pages,
    admin::audit_trail_is_filterable_paginated_and_resolves_request_ids_on
);
on_postgres!(
    apply_is_all_or_nothing,
    admin::apply_is_all_or_nothing_and_prunes_on_request_on
);

/// `audit_durability = "os"` on PostgreSQL without a journal: the commit does not wait for
/// the database's disk (`synchronous_commit = off` for that transaction), and every exchange
/// answered 200 still has its record.
#[tokio::test]
async fn handed_off_audit_commits_record_every_exchange() {
    let Some(db) = TestDb::postgres("handed_off_audit_commits").await else {
        return;
    };
    let app = spawn_app_on(&db.url, |c| {
        c.audit_durability = sts_broker::journal::Durability::Os;
    })
    .await;
    for _ in 0..5 {
        let token = app.idp.token(&app.idp.claims());
        let response = app.exchange(&token, None, None).await;
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(app.audit_records(&id).await.len(), 1, "{id}");
    }
}

/// A commit that hangs (here: a lock on the audit table held by another session) answers no
/// exchange, so `/readyz` says not ready while it runs past its bound, and ready again once
/// it completes; the exchange waiting on it is then answered.
#[tokio::test]
async fn readiness_turns_503_while_an_audit_commit_hangs() {
    let Some(db) = TestDb::postgres("readiness_audit_commit_hangs").await else {
        return;
    };
    let app = spawn_app_on(&db.url, |_| {}).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let token = app.idp.token(&app.idp.claims());
    let app = &app;
    let watch = async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        while app.get("/readyz").await.status() != 503 {
            assert!(
                std::time::Instant::now() < deadline,
                "a hung commit must make the broker not ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        lock.rollback().await.unwrap();
    };
    let (answer, ()) = tokio::join!(app.exchange(&token, None, None), watch);
    assert_eq!(answer.status(), 200, "answered once the commit completes");
    assert_eq!(app.get("/readyz").await.status(), 200);
}
