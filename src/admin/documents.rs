//! Issuers and policies as stored documents: read, change (validated exactly as files are:
//! the same parser and the same `PolicySet::compile`, all or nothing, in force at once and
//! audited), and reloaded when another replica changed them.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::{AdminError, Precondition};
use crate::audit::{Actor, AuditEvent};
use crate::policy::test_case::TEST_KIND;
use crate::policy::{
    CurrentPolicies, GitHubAppDoc, IssuerDoc, Kind, Limits, PolicySet, TrustPolicyDoc,
};
use crate::storage::{DocumentChange, Storage, StoredDocument, StoredDocuments};
use crate::time::rfc3339;
use crate::trail::AuditWriter;

/// The stored documents and the policy set compiled from them.
pub struct Documents {
    store: Arc<dyn Storage>,
    policies: Arc<CurrentPolicies>,
    audit: AuditWriter,
    /// Bounds on what documents may say.
    limits: Limits,
    /// Documents in force that are not stored (the `--dev` issuer and policy).
    overlay: StoredDocuments,
    /// Serialises writes and reloads: check-then-write of the whole policy set is one step,
    /// and a reload never installs a set older than a write's.
    writes: tokio::sync::Mutex<()>,
}

/// A stored document as the API shows it.
#[derive(Debug, Serialize)]
pub struct DocumentView {
    /// The document (same fields as the YAML).
    pub document: Value,
    /// Its version (the `ETag`).
    pub version: i64,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Who changed it.
    pub updated_by: String,
}

impl From<StoredDocument> for DocumentView {
    fn from(d: StoredDocument) -> Self {
        Self {
            document: d.body,
            version: d.version,
            updated_at: rfc3339(d.updated_at),
            updated_by: d.updated_by,
        }
    }
}

/// What an apply changed (or, dry, would change).
#[derive(Debug, Default, Serialize)]
pub struct ApplyReport {
    /// New documents, as `Kind/name`.
    pub created: Vec<String>,
    /// Changed documents.
    pub updated: Vec<String>,
    /// Removed documents (with prune).
    pub deleted: Vec<String>,
    /// Documents already as given.
    pub unchanged: Vec<String>,
    /// Whether anything was written.
    pub applied: bool,
}

/// A document parsed from admin JSON: the same strict types as the YAML.
enum Parsed {
    Issuer(IssuerDoc),
    Policy(TrustPolicyDoc),
    App(GitHubAppDoc),
}

impl Parsed {
    fn parse(kind: Kind, mut body: Value, path_name: Option<&str>) -> Result<Self, AdminError> {
        let invalid = |m: String| AdminError::Invalid(vec![m]);
        let object = body
            .as_object_mut()
            .ok_or_else(|| invalid("the body must be a JSON object".into()))?;
        if let Some(k) = object.get("kind")
            && k.as_str() != Some(kind.as_str())
        {
            return Err(invalid(format!("kind must be {:?} here", kind.as_str())));
        }
        if let Some(name) = path_name {
            match object.get("name") {
                None => {
                    object.insert("name".into(), json!(name));
                }
                Some(n) if n.as_str() == Some(name) => {}
                Some(_) => {
                    return Err(invalid(format!(
                        "the body's name differs from {name:?} in the path"
                    )));
                }
            }
        }
        let fail = |e: crate::policy::parse::ParseError| invalid(e.to_string());
        Ok(match kind {
            Kind::Issuer => Parsed::Issuer(crate::policy::parse::from_json(body).map_err(fail)?),
            Kind::TrustPolicy => {
                Parsed::Policy(crate::policy::parse::from_json(body).map_err(fail)?)
            }
            Kind::GitHubApp => Parsed::App(crate::policy::parse::from_json(body).map_err(fail)?),
        })
    }

    fn name(&self) -> &str {
        match self {
            Parsed::Issuer(d) => &d.name,
            Parsed::Policy(d) => &d.name,
            Parsed::App(d) => &d.name,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Parsed::Issuer(_) => Kind::Issuer,
            Parsed::Policy(_) => Kind::TrustPolicy,
            Parsed::App(_) => Kind::GitHubApp,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Parsed::Issuer(d) => serde_json::to_value(d),
            Parsed::Policy(d) => serde_json::to_value(d),
            Parsed::App(d) => serde_json::to_value(d),
        }
        .unwrap_or(Value::Null)
    }

    /// Puts this document into `docs`, replacing one of the same kind and name.
    fn place(self, docs: &mut StoredDocuments) {
        match self {
            Parsed::Issuer(d) => {
                docs.issuers.retain(|x| x.name != d.name);
                docs.issuers.push(d);
            }
            Parsed::Policy(d) => {
                docs.policies.retain(|x| x.name != d.name);
                docs.policies.push(d);
            }
            Parsed::App(d) => {
                docs.apps.retain(|x| x.name != d.name);
                docs.apps.push(d);
            }
        }
    }
}

/// One change of a candidate set: a document, or the removal of one.
enum Candidate {
    Put(Box<Parsed>),
    Delete(Kind, String),
}

impl Candidate {
    fn parse(change: Value) -> Result<Self, AdminError> {
        let invalid = |m: &str| AdminError::Invalid(vec![m.to_owned()]);
        let Some(object) = change.as_object() else {
            return Err(invalid("each document must be a JSON object"));
        };
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Kind::parse)
            .ok_or_else(|| invalid("kind: must be Issuer, TrustPolicy or GitHubApp"))?;
        match object.get("delete") {
            None => {
                return Parsed::parse(kind, change, None).map(|p| Candidate::Put(Box::new(p)));
            }
            Some(Value::Bool(true)) => {}
            Some(_) => return Err(invalid("delete: must be true (or absent)")),
        }
        if let Some(other) = object
            .keys()
            .find(|k| !["kind", "name", "delete"].contains(&k.as_str()))
        {
            return Err(AdminError::Invalid(vec![format!(
                "{other}: unknown field (a deletion has only kind, name and delete)"
            )]));
        }
        match object.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => Ok(Candidate::Delete(kind, name.to_owned())),
            _ => Err(invalid("name: missing field")),
        }
    }
}

impl Documents {
    /// The documents in `store`, compiled into the set `policies` holds; `overlay` documents
    /// are in force too but never stored.
    pub fn new(
        store: Arc<dyn Storage>,
        policies: Arc<CurrentPolicies>,
        audit: AuditWriter,
        limits: Limits,
        overlay: StoredDocuments,
    ) -> Self {
        Self {
            store,
            policies,
            audit,
            limits,
            overlay,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The policy set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.policies.get()
    }

    /// The documents of one kind.
    pub async fn list_documents(&self, kind: Kind) -> Result<Vec<DocumentView>, AdminError> {
        Ok(self
            .store
            .list_documents(kind)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// One document.
    pub async fn get_document(&self, kind: Kind, name: &str) -> Result<DocumentView, AdminError> {
        self.store
            .document(kind, name)
            .await?
            .map(Into::into)
            .ok_or(AdminError::NotFound)
    }

    /// Every version of a document (deleted ones too).
    pub async fn document_history(&self, kind: Kind, name: &str) -> Result<Vec<Value>, AdminError> {
        let versions = self.store.history(kind, name).await?;
        if versions.is_empty() {
            return Err(AdminError::NotFound);
        }
        Ok(versions
            .into_iter()
            .map(|v| json!({"version": v.version, "changed_at": rfc3339(v.changed_at), "changed_by": v.changed_by, "document": v.body}))
            .collect())
    }

    /// Creates or replaces a document, when `precondition` admits the stored version;
    /// returns it and whether it was created.
    pub async fn put_document(
        &self,
        kind: Kind,
        name: &str,
        body: Value,
        precondition: &Precondition,
        actor: Actor<'_>,
    ) -> Result<(DocumentView, bool), AdminError> {
        let parsed = Parsed::parse(kind, body, Some(name))?;
        let _write = self.writes.lock().await;
        let before = self.store.document(kind, name).await?;
        let stored_version = before.as_ref().map(|b| b.version);
        if !precondition.admits(stored_version) {
            return Err(AdminError::PreconditionFailed);
        }
        let after = parsed.to_json();
        let mut docs = self.store.documents().await?;
        parsed.place(&mut docs);
        let set = self.compile_with_overlay(&docs)?;
        // The version checked above, again in the write: another replica may write between.
        let change = DocumentChange {
            kind,
            name: name.to_owned(),
            body: Some(after.to_string()),
            expected_version: precondition
                .is_conditional()
                .then_some(stored_version.unwrap_or(0)),
        };
        let detail = json!({"kind": kind.as_str(), "name": name, "before": before.as_ref().map(|b| &b.body), "after": after});
        self.commit(&[change], set, actor, "put", detail).await?;
        let stored = self
            .store
            .document(kind, name)
            .await?
            .ok_or(AdminError::NotFound)?;
        Ok((stored.into(), before.is_none()))
    }

    /// Deletes a document, when `precondition` admits the stored version (refused while
    /// policies still name an issuer).
    pub async fn delete_document(
        &self,
        kind: Kind,
        name: &str,
        precondition: &Precondition,
        actor: Actor<'_>,
    ) -> Result<(), AdminError> {
        let _write = self.writes.lock().await;
        let before = self.store.document(kind, name).await?;
        if !precondition.admits(before.as_ref().map(|b| b.version)) {
            return Err(AdminError::PreconditionFailed);
        }
        let before = before.ok_or(AdminError::NotFound)?;
        let mut docs = self.store.documents().await?;
        match kind {
            Kind::Issuer => docs.issuers.retain(|d| d.name != name),
            Kind::TrustPolicy => docs.policies.retain(|d| d.name != name),
            Kind::GitHubApp => docs.apps.retain(|d| d.name != name),
        }
        let set = self.compile_with_overlay(&docs)?;
        let change = DocumentChange {
            kind,
            name: name.to_owned(),
            body: None,
            expected_version: Some(before.version),
        };
        let detail =
            json!({"kind": kind.as_str(), "name": name, "before": before.body, "after": null});
        self.commit(&[change], set, actor, "delete", detail).await
    }

    /// Applies a whole set of documents at once (the GitOps path): all valid or nothing
    /// changes. With `prune`, stored documents not in the set are removed. With `dry_run`,
    /// only reports what would change.
    pub async fn apply_documents(
        &self,
        documents: Vec<Value>,
        prune: bool,
        dry_run: bool,
        actor: Actor<'_>,
    ) -> Result<ApplyReport, AdminError> {
        let mut parsed = Vec::with_capacity(documents.len());
        let mut errors = Vec::new();
        for (i, doc) in documents.into_iter().enumerate() {
            let kind = doc.get("kind").and_then(Value::as_str);
            if kind == Some(TEST_KIND) {
                // Test cases travel with the policies in git; they are never stored.
                continue;
            }
            let kind = kind.and_then(Kind::parse);
            match kind.map(|k| Parsed::parse(k, doc, None)) {
                Some(Ok(p)) => parsed.push(p),
                Some(Err(AdminError::Invalid(e))) => {
                    errors.extend(e.into_iter().map(|e| format!("document {i}: {e}")))
                }
                Some(Err(e)) => return Err(e),
                None => errors.push(format!(
                    "document {i}: kind must be Issuer, TrustPolicy or GitHubApp"
                )),
            }
        }
        if !errors.is_empty() {
            return Err(AdminError::Invalid(errors));
        }
        let _write = self.writes.lock().await;
        let stored: Vec<StoredDocument> = [Kind::GitHubApp, Kind::Issuer, Kind::TrustPolicy]
            .into_iter()
            .map(|k| self.store.list_documents(k))
            .collect::<futures_util::future::TryJoinAll<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut report = ApplyReport::default();
        let mut changes = Vec::new();
        let mut docs = if prune {
            StoredDocuments::default()
        } else {
            self.store.documents().await?
        };
        for p in &parsed {
            let label = format!("{}/{}", p.kind().as_str(), p.name());
            let body = p.to_json();
            match stored
                .iter()
                .find(|s| s.kind == p.kind() && s.name == p.name())
            {
                Some(s) if s.body == body => report.unchanged.push(label),
                Some(_) => report.updated.push(label),
                None => report.created.push(label),
            }
            changes.push(DocumentChange {
                kind: p.kind(),
                name: p.name().to_owned(),
                body: Some(body.to_string()),
                expected_version: None,
            });
        }
        if prune {
            for s in &stored {
                if !parsed
                    .iter()
                    .any(|p| p.kind() == s.kind && p.name() == s.name)
                {
                    report
                        .deleted
                        .push(format!("{}/{}", s.kind.as_str(), s.name));
                    changes.push(DocumentChange {
                        kind: s.kind,
                        name: s.name.clone(),
                        body: None,
                        expected_version: None,
                    });
                }
            }
        }
        for p in parsed {
            p.place(&mut docs);
        }
        let set = self.compile_with_overlay(&docs)?;
        let nothing =
            report.created.is_empty() && report.updated.is_empty() && report.deleted.is_empty();
        if dry_run || nothing {
            return Ok(report);
        }
        let detail = json!({"created": report.created, "updated": report.updated, "deleted": report.deleted, "prune": prune});
        self.commit(&changes, set, actor, "apply", detail).await?;
        report.applied = true;
        Ok(report)
    }

    /// The policy set `changes` would put in force, validated as an apply validates them
    /// (the same parser, the same compile, errors with their field paths): each document
    /// replaces the stored one of its kind and name, and `{"kind", "name", "delete": true}`
    /// removes one. Nothing is stored.
    pub async fn candidate(&self, changes: Vec<Value>) -> Result<PolicySet, AdminError> {
        let mut parsed = Vec::with_capacity(changes.len());
        let mut errors = Vec::new();
        for (i, change) in changes.into_iter().enumerate() {
            match Candidate::parse(change) {
                Ok(c) => parsed.push(c),
                Err(AdminError::Invalid(e)) => {
                    errors.extend(e.into_iter().map(|e| format!("document {i}: {e}")))
                }
                Err(e) => return Err(e),
            }
        }
        if !errors.is_empty() {
            return Err(AdminError::Invalid(errors));
        }
        let mut docs = self.store.documents().await?;
        for (i, change) in parsed.into_iter().enumerate() {
            match change {
                Candidate::Put(p) => (*p).place(&mut docs),
                Candidate::Delete(kind, name) => {
                    let count =
                        |d: &StoredDocuments| d.apps.len() + d.issuers.len() + d.policies.len();
                    let before = count(&docs);
                    match kind {
                        Kind::Issuer => docs.issuers.retain(|d| d.name != name),
                        Kind::TrustPolicy => docs.policies.retain(|d| d.name != name),
                        Kind::GitHubApp => docs.apps.retain(|d| d.name != name),
                    }
                    if before == count(&docs) {
                        errors.push(format!(
                            "document {i}: no stored {} named {name:?} to delete",
                            kind.as_str()
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(AdminError::Invalid(errors));
        }
        self.compile_with_overlay(&docs)
    }

    /// Recompiles the policy set from the stored documents plus the `--dev` overlay, as
    /// startup does, and puts it in force (another replica changed a document). Holds the
    /// write lock, so a set compiled from documents read before a write never replaces the
    /// one that write installed.
    pub async fn reload(&self) -> Result<(), AdminError> {
        let _write = self.writes.lock().await;
        let docs = self.store.documents().await?;
        let set = self.compile_with_overlay(&docs)?;
        self.policies.replace(set);
        Ok(())
    }

    /// Compiles `docs` plus the documents in force that are not stored (`--dev`).
    fn compile_with_overlay(&self, docs: &StoredDocuments) -> Result<PolicySet, AdminError> {
        let mut issuers = docs.issuers.clone();
        let mut policies = docs.policies.clone();
        issuers.extend(self.overlay.issuers.iter().cloned());
        policies.extend(self.overlay.policies.iter().cloned());
        PolicySet::compile_with_apps(&docs.apps, &issuers, &policies, &self.limits)
            .map_err(|errs| AdminError::Invalid(errs.iter().map(ToString::to_string).collect()))
    }

    /// Stores the changes, puts the new set in force, and records who did what. The audit
    /// record is written before the answer, as for exchanges.
    async fn commit(
        &self,
        changes: &[DocumentChange],
        set: PolicySet,
        actor: Actor<'_>,
        action: &str,
        detail: Value,
    ) -> Result<(), AdminError> {
        let now = crate::jose::unix_now();
        self.store.apply_documents(changes, actor.name, now).await?;
        self.policies.replace(set);
        let record = AuditEvent::admin_change(actor, action, detail, now);
        self.audit.record(record).await?;
        tracing::info!(request_id = actor.request_id, actor = %actor.name, action, "admin change");
        Ok(())
    }
}
