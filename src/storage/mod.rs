//! Persistence behind one small interface; one implementation per database.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::AuditEvent;
use crate::policy::{IssuerDoc, Kind, TrustPolicyDoc};

pub use sqlite::SqliteStore;

/// A database failure. Its text goes to logs, never to clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database said no.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The URL names no supported database.
    #[error("unsupported database_url (expected sqlite://…)")]
    Unsupported,
}

/// Every document in force.
#[derive(Debug, Default, Clone)]
pub struct StoredDocuments {
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
    /// The JSON body, or `None` to delete.
    pub body: Option<serde_json::Value>,
}

/// A signing key as stored.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// `ES256`, `RS256`, `EdDSA`.
    pub alg: String,
    /// PKCS#8 private key.
    pub private_key: Vec<u8>,
    /// `active`, `next`, `retired`.
    pub state: String,
    /// Unix seconds.
    pub created_at: i64,
}

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
    /// Every signing key.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StorageError>;
    /// Stores a new signing key.
    async fn insert_signing_key(&self, key: &StoredKey) -> Result<(), StorageError>;
    /// Appends audit records in one transaction.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StorageError>;
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
    /// Is the database reachable?
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Opens (creating if needed) the database `url` and applies its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>, StorageError> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::connect(url).await?));
    }
    Err(StorageError::Unsupported)
}
