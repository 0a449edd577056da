//! The broker library run by the benchmark itself (`--inprocess-broker CONFIG`), so that a
//! storage decorator can discard audit records. That is for measurement only: the real
//! server has no switch that turns auditing off.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use sts_broker::audit::{AuditEvent, AuditFilter, AuditRecord};
use sts_broker::config::Config;
use sts_broker::policy::Kind;
use sts_broker::startup::{Application, Options};
use sts_broker::storage::{
    self, ChangeFeed, DocumentChange, DocumentVersion, Storage, StorageError, StoredDocument,
    StoredDocuments, StoredKey, StoredRevocation,
};

/// Runs the broker like `sts-broker serve --config CONFIG`, with audit records discarded
/// when `audit_off`.
pub async fn serve(config: &Path, audit_off: bool) -> anyhow::Result<()> {
    let config = Config::load(Some(config))?;
    sts_broker::telemetry::init(config.log_format);
    let store = storage::connect(config.database_url.expose())
        .await
        .context("opening the database")?;
    let store: Arc<dyn Storage> = match audit_off {
        true => Arc::new(DiscardAudit(store)),
        false => store,
    };
    let app = Application::build_with_store(config, Options::default(), store).await?;
    app.run_until_stopped().await?;
    Ok(())
}

/// Every call goes to the real store except `append_audit`, which keeps nothing.
struct DiscardAudit(Arc<dyn Storage>);

#[async_trait]
impl Storage for DiscardAudit {
    async fn append_audit(&self, _events: &[AuditEvent]) -> Result<(), StorageError> {
        Ok(())
    }
    async fn documents(&self) -> Result<StoredDocuments, StorageError> {
        self.0.documents().await
    }
    async fn apply_documents(
        &self,
        changes: &[DocumentChange],
        actor: &str,
        now: i64,
    ) -> Result<usize, StorageError> {
        self.0.apply_documents(changes, actor, now).await
    }
    async fn list_documents(&self, kind: Kind) -> Result<Vec<StoredDocument>, StorageError> {
        self.0.list_documents(kind).await
    }
    async fn document(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<StoredDocument>, StorageError> {
        self.0.document(kind, name).await
    }
    async fn history(&self, kind: Kind, name: &str) -> Result<Vec<DocumentVersion>, StorageError> {
        self.0.history(kind, name).await
    }
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StorageError> {
        self.0.query_audit(filter).await
    }
    async fn audit_by_request(&self, request_id: &str) -> Result<Vec<AuditRecord>, StorageError> {
        self.0.audit_by_request(request_id).await
    }
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        self.0.signing_keys().await
    }
    async fn insert_signing_key(&self, key: &StoredKey) -> Result<(), StorageError> {
        self.0.insert_signing_key(key).await
    }
    async fn reseal_signing_key(&self, kid: &str, sealed_key: &[u8]) -> Result<(), StorageError> {
        self.0.reseal_signing_key(kid, sealed_key).await
    }
    async fn delete_signing_key(&self, kid: &str) -> Result<(), StorageError> {
        self.0.delete_signing_key(kid).await
    }
    async fn rotate_signing_keys(
        &self,
        active: &str,
        next: &str,
        new_next: &StoredKey,
        now: i64,
    ) -> Result<(), StorageError> {
        self.0
            .rotate_signing_keys(active, next, new_next, now)
            .await
    }
    async fn replace_signing_keys(
        &self,
        active: &StoredKey,
        next: &StoredKey,
    ) -> Result<Vec<String>, StorageError> {
        self.0.replace_signing_keys(active, next).await
    }
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires: i64,
    ) -> Result<bool, StorageError> {
        self.0.consume_jti(issuer, jti, expires).await
    }
    async fn purge_jtis(&self, now: i64) -> Result<u64, StorageError> {
        self.0.purge_jtis(now).await
    }
    async fn insert_revocation(&self, revocation: &StoredRevocation) -> Result<(), StorageError> {
        self.0.insert_revocation(revocation).await
    }
    async fn revocations(&self, now: i64) -> Result<Vec<StoredRevocation>, StorageError> {
        self.0.revocations(now).await
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.0.ping().await
    }
    async fn subscribe(&self) -> Result<Option<ChangeFeed>, StorageError> {
        self.0.subscribe().await
    }
}
