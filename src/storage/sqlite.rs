//! The embedded default: SQLite through sqlx.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::rows;
use super::sqlite_audit::AuditConnection;
use super::{
    AuditRow, DocumentChange, DocumentVersion, IndexEntry, Storage, StorageError, StoredDocument,
    StoredDocuments, StoredKey, StoredRevocation,
};
use crate::audit::{AuditEvent, AuditFilter};
use crate::policy::Kind;

/// Page cache of each pooled connection, in KiB (negative: SQLite reads KiB), instead of
/// SQLite's 2,000. The first start writes every policy file through one of them, which
/// then kept ~1.75 MB of pages for the life of the process (heaptrack, 10,000 policies),
/// pages it rarely gets to reuse: a connection's cache is invalidated whenever another
/// connection writes, and the audit index writes all the time.
const POOL_CACHE_KIB: &str = "-512";

/// SQLite storage.
pub struct SqliteStore {
    pool: SqlitePool,
    /// The audit writer's own connection. SQLite drops a connection's page cache whenever
    /// another connection wrote since its last transaction; audit batches spread over the
    /// pool made every batch re-read the index pages it was about to update. One connection
    /// keeps them: bytes read per exchange under the benchmark's load 23.5 KB -> 6.9 KB.
    audit: Arc<Mutex<AuditConnection>>,
}

impl SqliteStore {
    /// Opens `url`, creating the file (and its folder) on first start, and migrates.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        // The audit connection opens the file by name, and an audit log must be durable:
        // an in-memory database is refused rather than split into two unrelated ones.
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StorageError::InMemory);
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + FULL: a committed audit record survives a power loss, not only a process
            // crash. Group commit shares the fsync; measured A/B (4 runs): no difference
            // beyond noise.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("cache_size", POOL_CACHE_KIB);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Database(Box::new(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let audit = AuditConnection::open(options.get_filename())?;
        Ok(Self {
            pool,
            audit: Arc::new(Mutex::new(audit)),
        })
    }
}

impl SqliteStore {
    /// Opens the existing database `url` to read only: not created, not migrated, and
    /// SQLite refuses any write on these connections (a tool reading a broker's file).
    pub async fn open_read_only(url: &str) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(false)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let audit = AuditConnection::open_read_only(options.get_filename())?;
        Ok(Self {
            pool,
            audit: Arc::new(Mutex::new(audit)),
        })
    }
}

#[async_trait]
impl Storage for SqliteStore {
    async fn documents(&self) -> Result<StoredDocuments, StorageError> {
        // Row by row: with 10,000 policies, all rows held at once (bodies and driver
        // overhead) were most of the memory a restart peaked at.
        let mut rows =
            sqlx::query("SELECT kind, name, body, updated_by FROM documents ORDER BY kind, name")
                .fetch(&self.pool);
        let mut docs = StoredDocuments::default();
        while let Some(row) = rows.try_next().await? {
            rows::collect_document(&mut docs, &row)?;
        }
        Ok(docs)
    }

    async fn apply_documents(
        &self,
        changes: &[DocumentChange],
        actor: &str,
        now: i64,
    ) -> Result<usize, StorageError> {
        // IMMEDIATE takes the write lock before the version checks read: a concurrent writer
        // waits (busy timeout) and then sees this one's result, so it gets `Conflict` rather
        // than "database is locked" from a stale read.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut changed = 0;
        for change in changes {
            let kind = change.kind.as_str();
            let current: Option<(i64, String)> =
                sqlx::query_as("SELECT version, body FROM documents WHERE kind = ? AND name = ?")
                    .bind(kind)
                    .bind(&change.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(expected) = change.expected_version
                && current.as_ref().map_or(0, |(v, _)| *v) != expected
            {
                return Err(StorageError::Conflict {
                    kind: change.kind.as_str(),
                    name: change.name.clone(),
                });
            }
            let body = &change.body;
            if current.as_ref().map(|(_, b)| b) == body.as_ref() {
                continue;
            }
            let last_version: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(version) FROM document_versions WHERE kind = ? AND name = ?",
            )
            .bind(kind)
            .bind(&change.name)
            .fetch_one(&mut *tx)
            .await?;
            let version = last_version.unwrap_or(0) + 1;
            sqlx::query("INSERT INTO document_versions (kind, name, version, body, changed_at, changed_by) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(kind)
                .bind(&change.name)
                .bind(version)
                .bind(body)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
            match body {
                Some(body) => {
                    sqlx::query(
                        "INSERT INTO documents (kind, name, version, body, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)
                         ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, body = excluded.body,
                         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    )
                    .bind(kind)
                    .bind(&change.name)
                    .bind(version)
                    .bind(body)
                    .bind(now)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM documents WHERE kind = ? AND name = ?")
                        .bind(kind)
                        .bind(&change.name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            changed += 1;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn list_documents(&self, kind: Kind) -> Result<Vec<StoredDocument>, StorageError> {
        let rows = sqlx::query(
            "SELECT name, version, body, updated_at, updated_by FROM documents WHERE kind = ? ORDER BY name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| rows::stored_document(kind, row))
            .collect()
    }

    async fn document(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<StoredDocument>, StorageError> {
        let row = sqlx::query(
            "SELECT name, version, body, updated_at, updated_by FROM documents WHERE kind = ? AND name = ?",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| rows::stored_document(kind, row))
            .transpose()
    }

    async fn history(&self, kind: Kind, name: &str) -> Result<Vec<DocumentVersion>, StorageError> {
        let rows = sqlx::query(
            "SELECT version, body, changed_at, changed_by FROM document_versions WHERE kind = ? AND name = ? ORDER BY version",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::document_version).collect()
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StorageError> {
        let mut q = rows::audit_query::<Sqlite>(filter);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::audit_row).collect()
    }

    async fn audit_by_request(&self, request_id: &str) -> Result<Vec<AuditRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM audit_events WHERE request_id = ? ORDER BY id",
            rows::AUDIT_COLUMNS
        )))
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::audit_row).collect()
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, sealed, state, created_at, activated_at, retired_at
             FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::stored_key).collect()
    }

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<(), StorageError> {
        insert_key(&self.pool, key).await
    }

    async fn reseal_signing_key(&self, kid: &str, sealed_key: &[u8]) -> Result<(), StorageError> {
        sqlx::query("UPDATE signing_keys SET private_key = ?, sealed = 1 WHERE kid = ?")
            .bind(sealed_key)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rotate_signing_keys(
        &self,
        active: &str,
        next: &str,
        new_next: &StoredKey,
        now: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        let promoted = sqlx::query("UPDATE signing_keys SET state = 'active', activated_at = ? WHERE kid = ? AND state = 'next'")
            .bind(now)
            .bind(next)
            .execute(&mut *tx)
            .await?;
        if promoted.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                kind: "signing key",
                name: next.to_owned(),
            });
        }
        sqlx::query("UPDATE signing_keys SET state = 'retired', retired_at = ? WHERE kid = ? AND state = 'active'")
            .bind(now)
            .bind(active)
            .execute(&mut *tx)
            .await?;
        insert_key(&mut *tx, new_next).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replace_signing_keys(
        &self,
        active: &StoredKey,
        next: &StoredKey,
    ) -> Result<Vec<String>, StorageError> {
        // IMMEDIATE: the write lock before anything is read, as for document changes.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let removed: Vec<String> = sqlx::query_scalar("DELETE FROM signing_keys RETURNING kid")
            .fetch_all(&mut *tx)
            .await?;
        insert_key(&mut *tx, active).await?;
        insert_key(&mut *tx, next).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn insert_revocation(&self, r: &StoredRevocation) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO revocations (jti, policy, subject, issued_since, issued_until, expires_at,
             created_at, created_by, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.jti)
        .bind(&r.policy)
        .bind(&r.subject)
        .bind(r.issued_since)
        .bind(r.issued_until)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(&r.created_by)
        .bind(&r.reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn revocations(&self, now: i64) -> Result<Vec<StoredRevocation>, StorageError> {
        sqlx::query("DELETE FROM revocations WHERE expires_at < ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT jti, policy, subject, issued_since, issued_until, expires_at, created_at,
             created_by, reason FROM revocations ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::stored_revocation).collect()
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StorageError> {
        let audit = self.audit.clone();
        let events = events.to_vec();
        tokio::task::spawn_blocking(move || append(&audit, &events))
            .await
            .map_err(|e| StorageError::Corrupt(format!("audit append stopped: {e}")))?
    }

    /// Always durable: on SQLite the database commit is the durable write only without a
    /// journal, which the embedded default always has.
    fn append_audit_blocking(
        &self,
        events: &[AuditEvent],
        _durable: bool,
        _runtime: &tokio::runtime::Handle,
    ) -> Result<(), StorageError> {
        append(&self.audit, events)
    }

    /// Slim rows: the journal holds the detail.
    fn index_keeps_detail(&self) -> bool {
        false
    }

    async fn journal_mark(&self, journal_id: &str) -> Result<Option<u64>, StorageError> {
        let mark: Option<i64> = sqlx::query_scalar(
            "SELECT indexed_through FROM audit_journal_marks WHERE journal_id = ?",
        )
        .bind(journal_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(mark.map(|m| m as u64))
    }

    async fn index_audit(
        &self,
        journal_id: &str,
        entries: &[IndexEntry],
    ) -> Result<(), StorageError> {
        let audit = self.audit.clone();
        let (journal_id, entries) = (journal_id.to_owned(), entries.to_vec());
        tokio::task::spawn_blocking(move || index(&audit, &journal_id, &entries))
            .await
            .map_err(|e| StorageError::Corrupt(format!("audit indexing stopped: {e}")))?
    }

    fn index_audit_blocking(
        &self,
        journal_id: &str,
        entries: &[IndexEntry],
        _runtime: &tokio::runtime::Handle,
    ) -> Result<(), StorageError> {
        index(&self.audit, journal_id, entries)
    }

    async fn prune_audit(&self, before: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE time < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "INSERT INTO used_jtis (issuer, jti, expires) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_jtis(&self, now: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM used_jtis WHERE expires < ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<Option<super::ChangeFeed>, StorageError> {
        Ok(None)
    }
}

/// One statement, so SQLite's single writer makes the check and the insert atomic: two
/// callers creating the first `active` (or a `next`) key at once get one key and a `Conflict`.
async fn insert_key<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    key: &StoredKey,
) -> Result<(), StorageError> {
    let done = sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key, sealed, state, created_at, activated_at, retired_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
         WHERE ?5 NOT IN ('active', 'next')
            OR NOT EXISTS (SELECT 1 FROM signing_keys WHERE state = ?5)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.private_key)
    .bind(i64::from(key.sealed))
    .bind(key.state.as_str())
    .bind(key.created_at)
    .bind(key.activated_at)
    .bind(key.retired_at)
    .execute(executor)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::Conflict {
            kind: "signing key",
            name: key.state.as_str().to_owned(),
        });
    }
    Ok(())
}

/// Indexes on the audit connection, on the calling thread.
fn index(
    audit: &Mutex<AuditConnection>,
    journal_id: &str,
    entries: &[IndexEntry],
) -> Result<(), StorageError> {
    let mut conn = audit.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(conn.index(journal_id, entries)?)
}

/// Appends on the audit connection, on the calling thread.
fn append(audit: &Mutex<AuditConnection>, events: &[AuditEvent]) -> Result<(), StorageError> {
    // A panic while appending rolled its transaction back; the connection is still usable.
    let mut conn = audit.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(conn.append(events)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            request_id: format!("r{i}"),
            time: 1_000 + i as i64,
            kind: crate::audit::AuditKind::Exchange,
            decision: Some(Decision::Allow),
            reason: "issued".into(),
            client_addr: Some("127.0.0.1".into()),
            policy: Some("p".into()),
            inbound_iss: Some("https://issuer.example".into()),
            inbound_sub: Some(format!("sub-{i}")),
            inbound_jti: None,
            issued_jti: Some(format!("jti-{i}")),
            issued_exp: Some(2_000),
            detail: serde_json::json!({"audience": "a", "n": i}),
            claims_text: None,
        }
    }

    #[tokio::test]
    async fn in_memory_databases_are_refused() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let err = SqliteStore::connect(url).await.err().expect(url);
            assert!(matches!(err, StorageError::InMemory), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn audit_batches_of_every_size_are_stored_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let sizes = [1, 64, 131];
        let mut next = 0;
        for size in sizes {
            let batch: Vec<AuditEvent> = (next..next + size).map(event).collect();
            store.append_audit(&batch).await.unwrap();
            next += size;
        }
        store.append_audit(&[]).await.unwrap();
        let stored = store
            .query_audit(&AuditFilter {
                limit: 10_000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let ids: Vec<String> = stored
            .iter()
            .rev()
            .map(|r| r.event.request_id.clone())
            .collect();
        let expected: Vec<String> = (0..next).map(|i| format!("r{i}")).collect();
        assert_eq!(ids, expected);
        let last = &stored[0].event;
        assert_eq!(
            last.inbound_sub.as_deref(),
            Some(format!("sub-{}", next - 1).as_str())
        );
        assert_eq!(last.detail["n"], next - 1);
        assert_eq!(last.decision, Some(Decision::Allow));
    }

    #[tokio::test]
    async fn journal_records_are_indexed_slim_once_and_the_mark_moves_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        assert_eq!(store.journal_mark("j1").await.unwrap(), None);
        let entries: Vec<IndexEntry> = (1..=5)
            .map(|seq| IndexEntry {
                seq,
                position: 1000 + seq as i64,
                event: event(seq as usize),
            })
            .collect();
        store.index_audit("j1", &entries[..3]).await.unwrap();
        // A batch given again after a crash, overlapping what was indexed: once each.
        store.index_audit("j1", &entries).await.unwrap();
        assert_eq!(store.journal_mark("j1").await.unwrap(), Some(5));
        assert_eq!(store.journal_mark("j2").await.unwrap(), None);
        let rows = store
            .query_audit(&AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let positions: Vec<i64> = rows
            .iter()
            .map(|r| {
                r.journal_position
                    .expect("an indexed row keeps its position")
            })
            .collect();
        assert_eq!(positions, [1005, 1004, 1003, 1002, 1001]);
        // Filters work on what the slim row keeps.
        let by_subject = store
            .query_audit(&AuditFilter {
                subject: Some("sub-4".into()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(by_subject.len(), 1);
        let by_request = store.audit_by_request("r2").await.unwrap();
        assert_eq!(by_request.len(), 1);
        assert_eq!(store.prune_audit(1_003).await.unwrap(), 2);
    }
}
