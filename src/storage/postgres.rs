//! PostgreSQL through sqlx: one database shared by several broker replicas.
//!
//! The semantics are SQLite's (see `sqlite.rs`); what differs is concurrency. SQLite has one
//! writer at a time; here concurrent transactions from other replicas are normal, so every
//! check-then-write below says how it stays correct under them. Each write that changes
//! shared state also notifies the other replicas (see [`changes`]).

mod changes;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, QueryBuilder};

use super::rows;
use super::{
    AuditRow, Change, ChangeFeed, DocumentChange, DocumentVersion, IndexEntry, Storage,
    StorageError, StoredDocument, StoredDocuments, StoredKey, StoredRevocation,
};
use crate::audit::{AuditEvent, AuditFilter};
use crate::policy::Kind;

/// Connections per replica; one more than these is never opened.
const MAX_CONNECTIONS: u32 = 10;
/// Waiting for a free connection (or a new one) longer than this fails the request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The server cancels any statement running longer (a stuck query must not hold a request
/// or a lock forever).
const STATEMENT_TIMEOUT: &str = "10s";
/// Key of the transaction-scoped advisory lock that serialises document writes.
const DOCUMENTS_LOCK: i64 = 0x5354_5344_4f43; // "STSDOC"
/// Key of the transaction-scoped advisory lock that keeps audit ids in commit order.
const AUDIT_ORDER_LOCK: i64 = 0x5354_5341_5544; // "STSAUD"

/// Audit records per INSERT statement: 13 parameters each, far below PostgreSQL's 65,535.
const AUDIT_ROWS_PER_INSERT: usize = 256;

/// PostgreSQL storage.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (the database must exist) and migrates. The migrator holds an
    /// advisory lock while it runs, so replicas starting at once migrate one after another.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url)?.application_name("sts-broker");
        // Migrations run on a connection of their own, without the statement timeout: an
        // index built on a large audit table, or waiting for another replica's migration
        // (the advisory lock), may rightly take longer than any request should.
        let mut migrating = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut migrating)
            .await?;
        migrating.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.options([("statement_timeout", STATEMENT_TIMEOUT)]))
            .await?;
        Ok(Self { pool })
    }
}

impl PostgresStore {
    /// Connects to `url` to read only: no migrations, and every transaction read-only, so
    /// a tool pointed at a live database cannot change it.
    pub async fn open_read_only(url: &str) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("sts-broker (read-only)")
            .options([
                ("statement_timeout", STATEMENT_TIMEOUT),
                ("default_transaction_read_only", "on"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Storage for PostgresStore {
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
        let mut tx = self.pool.begin().await?;
        // Document writes are rare admin actions; one at a time across all replicas makes
        // each version check and `MAX(version) + 1` below exact, including for a document
        // that does not exist yet (which no row lock could cover).
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DOCUMENTS_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut changed = 0;
        for change in changes {
            if apply_one(&mut tx, change, actor, now).await? {
                changed += 1;
            }
        }
        if changed > 0 {
            changes::notify(&mut tx, Change::Documents).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn list_documents(&self, kind: Kind) -> Result<Vec<StoredDocument>, StorageError> {
        let rows = sqlx::query(
            "SELECT name, version, body, updated_at, updated_by FROM documents WHERE kind = $1 ORDER BY name",
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
            "SELECT name, version, body, updated_at, updated_by FROM documents WHERE kind = $1 AND name = $2",
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
            "SELECT version, body, changed_at, changed_by FROM document_versions
             WHERE kind = $1 AND name = $2 ORDER BY version",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::document_version).collect()
    }

    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StorageError> {
        let mut q = rows::audit_query::<Postgres>(filter);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::audit_row).collect()
    }

    async fn audit_by_request(&self, request_id: &str) -> Result<Vec<AuditRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM audit_events WHERE request_id = $1 ORDER BY id",
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
        let mut tx = self.pool.begin().await?;
        insert_key(&mut tx, key).await?;
        changes::notify(&mut tx, Change::Keys).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reseal_signing_key(&self, kid: &str, sealed_key: &[u8]) -> Result<(), StorageError> {
        // The public key is unchanged, so other replicas need not hear of it.
        sqlx::query("UPDATE signing_keys SET private_key = $1, sealed = true WHERE kid = $2")
            .bind(sealed_key)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        changes::notify(&mut tx, Change::Keys).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_signing_keys(
        &self,
        active: &str,
        next: &str,
        new_next: &StoredKey,
        now: i64,
    ) -> Result<(), StorageError> {
        let conflict = || StorageError::Conflict {
            kind: "signing key",
            name: next.to_owned(),
        };
        let mut tx = self.pool.begin().await?;
        // Retire first: the unique index allows one active key at any moment. A concurrent
        // rotation waits on this row's lock, then finds it no longer active: `Conflict`.
        let retired = sqlx::query(
            "UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE kid = $2 AND state = 'active'",
        )
        .bind(now)
        .bind(active)
        .execute(&mut *tx)
        .await?;
        if retired.rows_affected() != 1 {
            return Err(conflict());
        }
        let promoted = sqlx::query(
            "UPDATE signing_keys SET state = 'active', activated_at = $1 WHERE kid = $2 AND state = 'next'",
        )
        .bind(now)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if promoted.rows_affected() != 1 {
            return Err(conflict());
        }
        insert_key(&mut tx, new_next).await?;
        changes::notify(&mut tx, Change::Keys).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replace_signing_keys(
        &self,
        active: &StoredKey,
        next: &StoredKey,
    ) -> Result<Vec<String>, StorageError> {
        let mut tx = self.pool.begin().await?;
        // Waits for a rotation in progress on another replica (and holds off the next):
        // otherwise the DELETE could miss the next key that rotation is inserting, and the
        // insert below would conflict with it, leaving the compromised keys in place.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let removed: Vec<String> = sqlx::query_scalar("DELETE FROM signing_keys RETURNING kid")
            .fetch_all(&mut *tx)
            .await?;
        insert_key(&mut tx, active).await?;
        insert_key(&mut tx, next).await?;
        changes::notify(&mut tx, Change::Keys).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, events.iter()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit_handed_off(&self, events: &[AuditEvent]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        // For this transaction only: the commit returns before its WAL reaches the disk
        // (PostgreSQL writes it within 3 × wal_writer_delay); a crash of the broker loses
        // nothing, one of the database server may lose the last fraction of a second.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, events.iter()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn journal_mark(&self, journal_id: &str) -> Result<Option<u64>, StorageError> {
        let mark: Option<i64> = sqlx::query_scalar(
            "SELECT indexed_through FROM audit_journal_marks WHERE journal_id = $1",
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
        let mut tx = self.pool.begin().await?;
        // The mark row, locked: a second indexer of the same journal (a restarted replica
        // whose old process lingers) waits, then skips what this one indexed.
        let mark: Option<i64> = sqlx::query_scalar(
            "SELECT indexed_through FROM audit_journal_marks WHERE journal_id = $1 FOR UPDATE",
        )
        .bind(journal_id)
        .fetch_optional(&mut *tx)
        .await?;
        let fresh: Vec<&IndexEntry> = entries
            .iter()
            .filter(|e| mark.is_none_or(|m| e.seq as i64 > m))
            .collect();
        let Some(last) = fresh.last().map(|e| e.seq as i64) else {
            return Ok(());
        };
        insert_audit(&mut tx, fresh.iter().map(|e| &e.event)).await?;
        sqlx::query(
            "INSERT INTO audit_journal_marks (journal_id, indexed_through) VALUES ($1, $2)
             ON CONFLICT (journal_id) DO UPDATE SET indexed_through = excluded.indexed_through",
        )
        .bind(journal_id)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn prune_audit(&self, before: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE time < $1")
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
        // A concurrent insert of the same key waits for the first to commit, then does
        // nothing: exactly one caller sees a row inserted.
        let done = sqlx::query(
            "INSERT INTO used_jtis (issuer, jti, expires) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_jtis(&self, now: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM used_jtis WHERE expires < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_revocation(&self, r: &StoredRevocation) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO revocations (jti, policy, subject, issued_since, issued_until, expires_at,
             created_at, created_by, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&mut *tx)
        .await?;
        changes::notify(&mut tx, Change::Revocations).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revocations(&self, now: i64) -> Result<Vec<StoredRevocation>, StorageError> {
        sqlx::query("DELETE FROM revocations WHERE expires_at < $1")
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

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<Option<ChangeFeed>, StorageError> {
        Ok(Some(changes::subscribe(&self.pool).await?))
    }
}

/// Applies one change inside `apply_documents`' transaction (which holds the documents
/// lock); `false` when it changes nothing.
async fn apply_one(
    tx: &mut sqlx::PgConnection,
    change: &DocumentChange,
    actor: &str,
    now: i64,
) -> Result<bool, StorageError> {
    let kind = change.kind.as_str();
    let current: Option<(i64, Value)> =
        sqlx::query_as("SELECT version, body FROM documents WHERE kind = $1 AND name = $2")
            .bind(kind)
            .bind(&change.name)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(expected) = change.expected_version
        && current.as_ref().map_or(0, |(v, _)| *v) != expected
    {
        return Err(StorageError::Conflict {
            kind,
            name: change.name.clone(),
        });
    }
    // JSONB keeps no key order or spacing, so compare values, not texts.
    let new: Option<Value> = change
        .body
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
    if current.as_ref().map(|(_, b)| b) == new.as_ref() {
        return Ok(false);
    }
    let last_version: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM document_versions WHERE kind = $1 AND name = $2",
    )
    .bind(kind)
    .bind(&change.name)
    .fetch_one(&mut *tx)
    .await?;
    let version = last_version.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO document_versions (kind, name, version, body, changed_at, changed_by)
         VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
    )
    .bind(kind)
    .bind(&change.name)
    .bind(version)
    .bind(&change.body)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    match &change.body {
        Some(body) => {
            sqlx::query(
                "INSERT INTO documents (kind, name, version, body, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4::jsonb, $5, $6)
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
            sqlx::query("DELETE FROM documents WHERE kind = $1 AND name = $2")
                .bind(kind)
                .bind(&change.name)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(true)
}

/// Inserts a key. The partial unique index on `state` (active, next) makes "create the key
/// if none exists" safe when replicas start at once: the loser's insert does nothing and it
/// gets `Conflict`, then reads the winner's key. An index rather than an advisory lock, so the
/// invariant holds for every writer, whatever code path it takes.
async fn insert_key(tx: &mut sqlx::PgConnection, key: &StoredKey) -> Result<(), StorageError> {
    let done = sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key, sealed, state, created_at, activated_at, retired_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (state) WHERE state IN ('active', 'next') DO NOTHING",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.private_key)
    .bind(key.sealed)
    .bind(key.state.as_str())
    .bind(key.created_at)
    .bind(key.activated_at)
    .bind(key.retired_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::Conflict {
            kind: "signing key",
            name: key.state.as_str().to_owned(),
        });
    }
    Ok(())
}

/// Inserts whole audit rows in `tx`, holding the lock that keeps audit ids in commit order.
async fn insert_audit<'e>(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: impl ExactSizeIterator<Item = &'e AuditEvent>,
) -> Result<(), StorageError> {
    if events.len() == 0 {
        return Ok(());
    }
    // Audit ids must be handed out in commit order. Without this, a batch that draws its ids
    // first but commits last (another replica's committer, a slow disk) appears below ids a
    // reader has already seen, and a reader that pages or tails by id never sees it. Holding
    // one transaction-scoped lock from before the ids are drawn until the commit serialises
    // the audit transactions of all replicas; each is one group commit, so that is one lock
    // per batch, not per record.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_ORDER_LOCK)
        .execute(&mut **tx)
        .await?;
    let events: Vec<&AuditEvent> = events.collect();
    // One multi-row INSERT per chunk: a round trip per statement, not per record.
    for chunk in events.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO audit_events (request_id, time, kind, decision, reason, client_addr,
             policy, inbound_iss, inbound_sub, inbound_jti, issued_jti, issued_exp, detail) ",
        );
        insert.push_values(chunk, |mut row, e| {
            row.push_bind(&e.request_id)
                .push_bind(e.time)
                .push_bind(e.kind.as_str())
                .push_bind(e.decision.map(|d| d.as_str()))
                .push_bind(&e.reason)
                .push_bind(&e.client_addr)
                .push_bind(&e.policy)
                .push_bind(&e.inbound_iss)
                .push_bind(&e.inbound_sub)
                .push_bind(&e.inbound_jti)
                .push_bind(&e.issued_jti)
                .push_bind(e.issued_exp)
                .push_bind(sqlx::types::Json(e.full_detail()));
        });
        insert.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}
