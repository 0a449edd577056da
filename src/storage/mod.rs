//! Persistence behind one small interface; one implementation per database.

mod postgres;
mod rows;
mod sqlite;
mod sqlite_audit;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::audit::{AuditEvent, AuditFilter};
use crate::policy::{GitHubAppDoc, IssuerDoc, Kind, TrustPolicyDoc};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A driver's error, kept as the cause; callers see no driver types.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A database failure. Its text goes to logs, never to clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database said no, or could not be reached.
    #[error("database: {0}")]
    Database(#[source] Cause),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[source] Cause),
    /// A stored row cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A conditional write found another version than expected.
    #[error("{kind} {name:?} changed meanwhile")]
    Conflict {
        /// Which kind.
        kind: &'static str,
        /// Which document.
        name: String,
    },
    /// An in-memory SQLite database was asked for; the audit log must outlive the process.
    #[error("database_url: an in-memory SQLite database cannot keep the audit log; name a file")]
    InMemory,
    /// The URL names no supported database.
    #[error("unsupported database_url (expected sqlite://…, postgres://… or postgresql://…)")]
    Unsupported,
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::Database(Box::new(e))
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Database(Box::new(e))
    }
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StorageError::Migrate(Box::new(e))
    }
}

/// Every document in force.
#[derive(Debug, Default, Clone)]
pub struct StoredDocuments {
    /// GitHub Apps.
    pub apps: Vec<GitHubAppDoc>,
    /// Issuers.
    pub issuers: Vec<IssuerDoc>,
    /// Trust policies.
    pub policies: Vec<TrustPolicyDoc>,
    /// Documents last written from the policies folder (`updated_by = policies_dir`): the
    /// files own them, so a document whose file is gone is removed at the next start.
    pub from_files: Vec<(Kind, String)>,
}

/// The actor recorded for documents applied from the policies folder.
pub const FILES_ACTOR: &str = "policies_dir";

/// One change to a document: a new body, or `None` to delete it.
#[derive(Debug, Clone)]
pub struct DocumentChange {
    /// Which kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The body as compact JSON text, or `None` to delete. Text rather than a
    /// `serde_json::Value`: loading 10,000 policy files builds one change per document, and
    /// as `Value` trees they took ~3.5 KB each, the largest share of start-up's peak memory.
    pub body: Option<String>,
    /// Apply only if the stored version is this one (0: only if absent); `None`: always.
    pub expected_version: Option<i64>,
}

/// A stored document with its version.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    /// Which kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Version, from 1; each change adds one.
    pub version: i64,
    /// The JSON body.
    pub body: serde_json::Value,
    /// Unix seconds of the last change.
    pub updated_at: i64,
    /// Who made it.
    pub updated_by: String,
}

/// One version in a document's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DocumentVersion {
    /// Version number.
    pub version: i64,
    /// The body; `None` records a deletion.
    pub body: Option<serde_json::Value>,
    /// Unix seconds.
    pub changed_at: i64,
    /// Who.
    pub changed_by: String,
}

/// A signing key as stored.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// `ES256`, `RS256`, `EdDSA`.
    pub alg: String,
    /// PKCS#8 private key, sealed under the KEK when `sealed`.
    pub private_key: Vec<u8>,
    /// Whether `private_key` is sealed.
    pub sealed: bool,
    /// Where it is in its life cycle.
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: i64,
    /// When it started signing.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
}

/// Where a signing key is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signing.
    Active,
    /// Published only, until every token it signed has expired.
    Retired,
}

impl KeyState {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "next" => Some(KeyState::Next),
            "active" => Some(KeyState::Active),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// A revocation rule as stored (see [`crate::revocation`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredRevocation {
    /// Exactly this token.
    pub jti: Option<String>,
    /// Every token issued under this policy (`client_id`).
    pub policy: Option<String>,
    /// Every token issued to this subject (`sub`).
    pub subject: Option<String>,
    /// Matching tokens have `iat` at or after this (Unix seconds)…
    pub issued_since: i64,
    /// …and at or before this.
    pub issued_until: i64,
    /// Forgotten after this: every token it could match has expired.
    pub expires_at: i64,
    /// When it was made.
    pub created_at: i64,
    /// Who made it.
    pub created_by: String,
    /// Why, as the admin said.
    pub reason: Option<String>,
}

/// A row of the audit index.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Monotonic id (the page cursor).
    pub id: i64,
    /// The event. For a row indexed from the journal on SQLite, only what the index keeps
    /// (request id, time, kind, decision, reason, policy, subject); the journal holds the rest.
    pub event: AuditEvent,
    /// Where the journal holds the whole event (packed), when the row keeps only part of it.
    pub journal_position: Option<i64>,
}

/// A journal record to index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Its sequence number in its journal.
    pub seq: u64,
    /// Its packed journal position.
    pub position: i64,
    /// The event.
    pub event: AuditEvent,
}

/// What changed in a database that several brokers share, so each reloads that state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Issuers or trust policies.
    Documents,
    /// Revocations.
    Revocations,
    /// Signing keys.
    Keys,
    /// Unknown: changes may have been missed (the feed reconnected); reload everything.
    All,
}

impl Change {
    /// The name sent over the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Documents => "documents",
            Change::Revocations => "revocations",
            Change::Keys => "keys",
            Change::All => "all",
        }
    }

    /// The change a wire name stands for; anything unknown (a newer replica) means `All`.
    pub fn parse(text: &str) -> Self {
        match text {
            "documents" => Change::Documents,
            "revocations" => Change::Revocations,
            "keys" => Change::Keys,
            _ => Change::All,
        }
    }
}

/// Changes committed by any broker sharing the database (this one included), in commit order.
pub type ChangeFeed = mpsc::Receiver<Change>;

/// What the broker keeps.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Every document in force.
    async fn documents(&self) -> Result<StoredDocuments, StorageError>;
    /// Applies all `changes` in one transaction, recording a version for each that changes
    /// something; returns how many did.
    async fn apply_documents(
        &self,
        changes: &[DocumentChange],
        actor: &str,
        now: i64,
    ) -> Result<usize, StorageError>;
    /// The documents of one kind, in name order.
    async fn list_documents(&self, kind: Kind) -> Result<Vec<StoredDocument>, StorageError>;
    /// One document.
    async fn document(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<StoredDocument>, StorageError>;
    /// Every version of a document, oldest first.
    async fn history(&self, kind: Kind, name: &str) -> Result<Vec<DocumentVersion>, StorageError>;
    /// Audit records matching `filter`, newest first.
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StorageError>;
    /// The audit records of one request.
    async fn audit_by_request(&self, request_id: &str) -> Result<Vec<AuditRow>, StorageError>;
    /// How far the journal `journal_id` has been indexed (its last indexed sequence number),
    /// `None` when nothing of it has been.
    async fn journal_mark(&self, journal_id: &str) -> Result<Option<u64>, StorageError>;
    /// Indexes journal records and moves the journal's mark to the last of them, in one
    /// transaction; entries at or before the mark are skipped, so a batch given twice (after
    /// a crash between commit and acknowledgement) is indexed once.
    async fn index_audit(
        &self,
        journal_id: &str,
        entries: &[IndexEntry],
    ) -> Result<(), StorageError>;
    /// Whether [`Storage::index_audit`] stores each record's `detail` (whole rows), or only
    /// what queries filter on and where the journal holds the rest.
    fn index_keeps_detail(&self) -> bool {
        true
    }
    /// [`Storage::index_audit`] for the indexer thread, blocking it until committed.
    fn index_audit_blocking(
        &self,
        journal_id: &str,
        entries: &[IndexEntry],
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), StorageError> {
        runtime.block_on(self.index_audit(journal_id, entries))
    }
    /// Forgets audit records older than `before` (Unix seconds); returns how many.
    async fn prune_audit(&self, before: i64) -> Result<u64, StorageError>;
    /// Every signing key.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StorageError>;
    /// Stores a new signing key. `Conflict` when it is `active` or `next` and a key in that
    /// state exists already (another broker created it first).
    async fn insert_signing_key(&self, key: &StoredKey) -> Result<(), StorageError>;
    /// Replaces a key's private material (sealing a legacy plaintext key).
    async fn reseal_signing_key(&self, kid: &str, sealed_key: &[u8]) -> Result<(), StorageError>;
    /// Forgets a key (a retired key past every token it signed, or an unused `next`).
    async fn delete_signing_key(&self, kid: &str) -> Result<(), StorageError>;
    /// In one transaction: `active` becomes retired, `next` becomes active, `new_next` is
    /// added. `Conflict` when `next` is no longer the next key (someone else rotated).
    async fn rotate_signing_keys(
        &self,
        active: &str,
        next: &str,
        new_next: &StoredKey,
        now: i64,
    ) -> Result<(), StorageError>;
    /// In one transaction: forgets every signing key and stores `active` and `next` instead
    /// (emergency replacement after a key compromise); returns the kids it forgot.
    async fn replace_signing_keys(
        &self,
        active: &StoredKey,
        next: &StoredKey,
    ) -> Result<Vec<String>, StorageError>;
    /// Appends audit records in one transaction.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StorageError>;
    /// [`Storage::append_audit`], answering once the database has the records without
    /// waiting for its disk (`audit_durability = "os"`: survives a crash of the broker, not
    /// of the database's machine). By default as durable as `append_audit`.
    async fn append_audit_handed_off(&self, events: &[AuditEvent]) -> Result<(), StorageError> {
        self.append_audit(events).await
    }
    /// [`Storage::append_audit`] (or, when not `durable`,
    /// [`Storage::append_audit_handed_off`]) for the audit committer, which runs on a thread of
    /// its own and blocks it until the batch is written. By default it runs on `runtime`; a
    /// store with a synchronous connection writes on the calling thread.
    fn append_audit_blocking(
        &self,
        events: &[AuditEvent],
        durable: bool,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), StorageError> {
        match durable {
            true => runtime.block_on(self.append_audit(events)),
            false => runtime.block_on(self.append_audit_handed_off(events)),
        }
    }
    /// Records that `jti` of `issuer` was exchanged, to be remembered until `expires`;
    /// `false` when it already was (a replay). Atomic across replicas sharing the database.
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires: i64,
    ) -> Result<bool, StorageError>;
    /// Forgets consumed jtis whose memory ended before `now`; returns how many.
    async fn purge_jtis(&self, now: i64) -> Result<u64, StorageError>;
    /// Records a revocation.
    async fn insert_revocation(&self, revocation: &StoredRevocation) -> Result<(), StorageError>;
    /// Revocations still in force at `now` (older ones are deleted).
    async fn revocations(&self, now: i64) -> Result<Vec<StoredRevocation>, StorageError>;
    /// Is the database reachable?
    async fn ping(&self) -> Result<(), StorageError>;
    /// Listens for changes made by other brokers sharing this database, until the feed is
    /// dropped. `None` when the database is not shared (the embedded SQLite file): nothing
    /// changes it behind this broker's back.
    async fn subscribe(&self) -> Result<Option<ChangeFeed>, StorageError>;
}

/// The file of an SQLite database URL (`None` for any other database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_owned())
}

/// Opens the existing database `url` to read only (no migrations, no writes): for tools that
/// look at a broker's database from outside it.
pub async fn open_read_only(url: &str) -> Result<Arc<dyn Storage>, StorageError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Arc::new(SqliteStore::open_read_only(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::open_read_only(url).await?)),
        _ => Err(StorageError::Unsupported),
    }
}

/// Opens (creating if needed) the database `url` and applies its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>, StorageError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Arc::new(SqliteStore::connect(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::connect(url).await?)),
        _ => Err(StorageError::Unsupported),
    }
}
