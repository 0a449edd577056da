//! The embedded default: SQLite through sqlx.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{DocumentChange, Storage, StorageError, StoredDocuments, StoredKey};
use crate::audit::AuditEvent;
use crate::policy::Kind;

/// SQLite storage.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `url`, creating the file (and its folder) on first start, and migrates.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; fsync happens at checkpoints.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StorageError::Database(sqlx::Error::Io(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Storage for SqliteStore {
    async fn documents(&self) -> Result<StoredDocuments, StorageError> {
        let rows =
            sqlx::query("SELECT kind, name, body, updated_by FROM documents ORDER BY kind, name")
                .fetch_all(&self.pool)
                .await?;
        let mut docs = StoredDocuments::default();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let name: String = row.try_get("name")?;
            let body: String = row.try_get("body")?;
            let updated_by: String = row.try_get("updated_by")?;
            let corrupt =
                |e: serde_json::Error| StorageError::Corrupt(format!("{kind} {name}: {e}"));
            match Kind::parse(&kind) {
                Some(Kind::Issuer) => docs
                    .issuers
                    .push(serde_json::from_str(&body).map_err(corrupt)?),
                Some(Kind::TrustPolicy) => docs
                    .policies
                    .push(serde_json::from_str(&body).map_err(corrupt)?),
                None => return Err(StorageError::Corrupt(format!("unknown kind {kind}"))),
            }
            if updated_by == super::FILES_ACTOR
                && let Some(kind) = Kind::parse(&kind)
            {
                docs.from_files.push((kind, name));
            }
        }
        Ok(docs)
    }

    async fn apply_documents(
        &self,
        changes: &[DocumentChange],
        actor: &str,
        now: i64,
    ) -> Result<usize, StorageError> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        for change in changes {
            let kind = change.kind.as_str();
            let current: Option<(i64, String)> =
                sqlx::query_as("SELECT version, body FROM documents WHERE kind = ? AND name = ?")
                    .bind(kind)
                    .bind(&change.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let body = change.body.as_ref().map(ToString::to_string);
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
                .bind(&body)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
            match &body {
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

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, state, created_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredKey {
                    kid: row.try_get("kid")?,
                    alg: row.try_get("alg")?,
                    private_key: row.try_get("private_key")?,
                    state: row.try_get("state")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<(), StorageError> {
        sqlx::query("INSERT INTO signing_keys (kid, alg, private_key, state, created_at, activated_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.private_key)
            .bind(&key.state)
            .bind(key.created_at)
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_events (request_id, time, kind, decision, reason, client_addr, policy,
                 inbound_iss, inbound_sub, inbound_jti, issued_jti, issued_exp, detail)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&e.request_id)
            .bind(e.time)
            .bind(e.kind)
            .bind(e.decision.map(|d| d.as_str()))
            .bind(&e.reason)
            .bind(&e.client_addr)
            .bind(&e.policy)
            .bind(&e.inbound_iss)
            .bind(&e.inbound_sub)
            .bind(&e.inbound_jti)
            .bind(&e.issued_jti)
            .bind(e.issued_exp)
            .bind(e.detail.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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
}
