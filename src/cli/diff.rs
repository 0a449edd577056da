//! `policy diff DIR`: what applying DIR would change, document by document as a unified diff
//! of its YAML, against a running broker or directly against its database (read only);
//! with `--impact`, also which recorded decisions would come out differently.
//!
//! Exit codes as `git diff --exit-code`: 0 nothing would change, 1 something would, 2 the
//! comparison could not be made (usage, unreadable or invalid input, broker unreachable).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{BrokerArgs, client, load_config, unified};
use crate::config::Config;
use crate::policy::load::Bundle;
use crate::policy::{GitHubAppDoc, IssuerDoc, Kind, Limits, PolicySet, TrustPolicyDoc};
use crate::preview::{Impact, Scope};
use crate::storage::{Storage, StoredDocuments};
use crate::trail::AuditTrail;

/// What `policy diff` was asked.
pub struct DiffArgs {
    /// The folder of YAML documents.
    pub dir: PathBuf,
    /// Stored documents not in DIR count as deleted.
    pub prune: bool,
    /// Also preview the impact on decisions since this (a duration or an RFC 3339 time).
    pub impact: Option<String>,
    /// Records the preview may look at.
    pub limit: Option<u64>,
    /// Compare with this database instead of a running broker.
    pub database_url: Option<String>,
    /// The audit journal's folder (with `--database-url`), when not the default.
    pub journal_dir: Option<PathBuf>,
    /// The configuration file (limits; the journal folder).
    pub config: Option<PathBuf>,
    /// The broker, without `--database-url`.
    pub broker: BrokerArgs,
}

/// One document as compared: its kind, name, body (the JSON the broker stores) and YAML.
struct Doc {
    kind: Kind,
    name: String,
    body: Value,
    yaml: String,
}

impl Doc {
    /// A document read into its type: YAML in the type's field order (`name` first).
    fn typed<T: serde::Serialize>(kind: Kind, name: &str, doc: &T) -> Self {
        let body = serde_json::to_value(doc).unwrap_or(Value::Null);
        let fields = serde_yaml_ng::to_string(doc).unwrap_or_default();
        Self::new(kind, name, body, &fields)
    }

    /// A stored body that no longer reads as its type: compared and shown as it is.
    fn raw(kind: Kind, name: &str, body: Value) -> Self {
        let fields = serde_yaml_ng::to_string(&body).unwrap_or_default();
        Self::new(kind, name, body, &fields)
    }

    fn new(kind: Kind, name: &str, body: Value, fields: &str) -> Self {
        let yaml = format!(
            "kind: {}\n{}",
            kind.as_str(),
            fields.trim_start_matches("---\n")
        );
        Self {
            kind,
            name: name.to_owned(),
            body,
            yaml,
        }
    }
}

/// Runs `policy diff`.
pub async fn run(args: DiffArgs) -> ExitCode {
    match diff(&args).await {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Whether anything would change; the error says why no comparison could be made.
async fn diff(args: &DiffArgs) -> Result<bool, String> {
    let bundle = read_dir(&args.dir)?;
    let local = local_docs(&bundle);
    let store = match &args.database_url {
        Some(url) => Some(
            crate::storage::open_read_only(url)
                .await
                .map_err(|e| format!("opening {}: {e}", redact(url)))?,
        ),
        None => None,
    };
    let stored = match &store {
        Some(store) => stored_from_database(&**store).await?,
        None => stored_from_broker(&args.broker).await?,
    };
    let mut changed = print_document_diffs(&args.dir, &local, &stored, args.prune);
    if let Some(since) = &args.impact {
        let impact = match &store {
            Some(store) => impact_local(args, store.clone(), &bundle, since).await?,
            None => impact_remote(args, &local, &stored, since).await?,
        };
        print!("{}", impact.render(since));
        changed |= !impact.changed.is_empty();
    }
    Ok(changed)
}

fn read_dir(dir: &Path) -> Result<Bundle, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    Bundle::load_dir(dir).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        format!("{} error(s) in {}", errors.len(), dir.display())
    })
}

fn local_docs(bundle: &Bundle) -> Vec<Doc> {
    let apps = (bundle.apps.iter()).map(|(d, _)| Doc::typed(Kind::GitHubApp, &d.name, d));
    let issuers = (bundle.issuers.iter()).map(|(d, _)| Doc::typed(Kind::Issuer, &d.name, d));
    let policies = (bundle.policies.iter()).map(|(d, _)| Doc::typed(Kind::TrustPolicy, &d.name, d));
    apps.chain(issuers).chain(policies).collect()
}

/// A stored body as this version writes it: read into the document type and written back,
/// so that fields an older version wrote differently (defaults, order) do not show as
/// changes. A body that no longer reads is compared as it is.
fn stored_doc(kind: Kind, name: &str, body: Value) -> Doc {
    let typed =
        match kind {
            Kind::Issuer => serde_json::from_value::<IssuerDoc>(body.clone())
                .map(|d| Doc::typed(kind, name, &d)),
            Kind::TrustPolicy => serde_json::from_value::<TrustPolicyDoc>(body.clone())
                .map(|d| Doc::typed(kind, name, &d)),
            Kind::GitHubApp => serde_json::from_value::<GitHubAppDoc>(body.clone())
                .map(|d| Doc::typed(kind, name, &d)),
        };
    typed.unwrap_or_else(|_| Doc::raw(kind, name, body))
}

async fn stored_from_database(store: &dyn Storage) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    for kind in [Kind::GitHubApp, Kind::Issuer, Kind::TrustPolicy] {
        let listed = store
            .list_documents(kind)
            .await
            .map_err(|e| format!("reading the stored documents: {e}"))?;
        docs.extend(
            listed
                .into_iter()
                .map(|d| stored_doc(kind, &d.name, d.body)),
        );
    }
    Ok(docs)
}

async fn stored_from_broker(broker: &BrokerArgs) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    for (kind, path) in [
        (Kind::GitHubApp, "github-apps"),
        (Kind::Issuer, "issuers"),
        (Kind::TrustPolicy, "policies"),
    ] {
        let (status, answer) = client::get(broker, path)
            .await
            .map_err(|_| format!("the broker did not list its {path}"))?;
        if status != 200 {
            return Err(format!("listing {path}: the broker answered {status}"));
        }
        for item in answer["items"].as_array().into_iter().flatten() {
            let body = item["document"].clone();
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            docs.push(stored_doc(kind, &name, body));
        }
    }
    Ok(docs)
}

/// Prints a unified diff per document that would change; whether any would.
fn print_document_diffs(dir: &Path, local: &[Doc], stored: &[Doc], prune: bool) -> bool {
    let find = |docs: &'_ [Doc], d: &Doc| -> Option<usize> {
        docs.iter()
            .position(|s| s.kind == d.kind && s.name == d.name)
    };
    let (mut created, mut updated, mut deleted) = (0, 0, 0);
    for doc in local {
        let label = format!("{}/{}", doc.kind.as_str(), doc.name);
        let old = find(stored, doc).map(|i| &stored[i].yaml);
        let new = &doc.yaml;
        match old {
            Some(old) if old == new => continue,
            Some(_) => updated += 1,
            None => created += 1,
        }
        let old_name = match old {
            Some(_) => format!("stored/{label}"),
            None => "/dev/null".to_owned(),
        };
        print!(
            "{}",
            unified::diff(
                old.map_or("", String::as_str),
                new,
                &old_name,
                &format!("{}/{label}", dir.display())
            )
        );
    }
    if prune {
        for doc in stored.iter().filter(|s| find(local, s).is_none()) {
            deleted += 1;
            let label = format!("stored/{}/{}", doc.kind.as_str(), doc.name);
            print!("{}", unified::diff(&doc.yaml, "", &label, "/dev/null"));
        }
    }
    let total = created + updated + deleted;
    if total == 0 {
        println!("no document would change");
    } else {
        println!(
            "{total} document(s) would change: {created} created, {updated} updated, {deleted} deleted"
        );
    }
    total > 0
}

/// The candidate documents as the preview API takes them: DIR's, and with `--prune` a
/// deletion for each stored document DIR lacks.
fn candidate_documents(local: &[Doc], stored: &[Doc], prune: bool) -> Vec<Value> {
    let mut documents: Vec<Value> = local
        .iter()
        .map(|d| {
            let mut body = d.body.clone();
            body["kind"] = json!(d.kind.as_str());
            body
        })
        .collect();
    if prune {
        documents.extend(
            stored
                .iter()
                .filter(|s| !local.iter().any(|l| l.kind == s.kind && l.name == s.name))
                .map(|s| json!({"kind": s.kind.as_str(), "name": s.name, "delete": true})),
        );
    }
    documents
}

async fn impact_remote(
    args: &DiffArgs,
    local: &[Doc],
    stored: &[Doc],
    since: &str,
) -> Result<Impact, String> {
    let mut body = json!({
        "documents": candidate_documents(local, stored, args.prune),
        "since": since,
    });
    if let Some(limit) = args.limit {
        body["limit"] = json!(limit);
    }
    let (status, answer) = client::post(&args.broker, "policies/preview", &body)
        .await
        .map_err(|_| "the broker did not answer the preview".to_owned())?;
    if status != 200 {
        for e in answer["errors"].as_array().into_iter().flatten() {
            eprintln!("{}", e.as_str().unwrap_or_default());
        }
        return Err(format!(
            "the preview was refused ({status}): {}",
            answer["error_description"].as_str().unwrap_or("")
        ));
    }
    serde_json::from_value(answer).map_err(|e| format!("the preview's answer: {e}"))
}

/// The preview run here, against the database (and the broker's journal): the same scan
/// the broker runs, with the stored documents as the set in force.
async fn impact_local(
    args: &DiffArgs,
    store: Arc<dyn Storage>,
    bundle: &Bundle,
    since: &str,
) -> Result<Impact, String> {
    let config = match &args.config {
        Some(_) => Some(load_config(args.config.clone()).map_err(|_| "the configuration")?),
        None => None,
    };
    let limits = limits(config.as_ref());
    let scope = Scope::parse(since, args.limit, crate::jose::unix_now())?;
    let stored = store
        .documents()
        .await
        .map_err(|e| format!("reading the stored documents: {e}"))?;
    // The stored set passed the broker's own checks; it is compiled with this
    // configuration's limits (`--config`), as the candidate is.
    let current = compile(&stored, &limits, "the stored set")?;
    let candidate = compile(
        &overlay(stored, bundle, args.prune),
        &limits,
        "the candidate set",
    )?;
    let journal = args.journal_dir.clone().or_else(|| {
        config
            .as_ref()
            .and_then(Config::audit_journal_dir)
            .or_else(|| {
                crate::storage::sqlite_file(args.database_url.as_deref().unwrap_or(""))
                    .map(|file| file.with_file_name("audit-journal"))
            })
    });
    let trail = AuditTrail::read_only(store, journal);
    crate::preview::scan(&trail, Arc::new(current), Arc::new(candidate), &scope)
        .await
        .map_err(|e| format!("reading the audit trail: {e}"))
}

fn limits(config: Option<&Config>) -> Limits {
    let defaults = Config::default();
    let config = config.unwrap_or(&defaults);
    Limits {
        max_ttl: config.max_ttl.0,
        allow_insecure_loopback_issuers: config.allow_insecure_loopback_issuers,
        // The preview decides again; it never calls GitHub, so it needs no app's key.
        read_app_keys: false,
    }
}

/// The stored documents with DIR's in place of those of the same kind and name (and, with
/// `prune`, DIR's only).
fn overlay(mut stored: StoredDocuments, bundle: &Bundle, prune: bool) -> StoredDocuments {
    if prune {
        stored.apps.clear();
        stored.issuers.clear();
        stored.policies.clear();
    }
    for (doc, _) in &bundle.apps {
        stored.apps.retain(|d| d.name != doc.name);
        stored.apps.push(doc.clone());
    }
    for (doc, _) in &bundle.issuers {
        stored.issuers.retain(|d| d.name != doc.name);
        stored.issuers.push(doc.clone());
    }
    for (doc, _) in &bundle.policies {
        stored.policies.retain(|d| d.name != doc.name);
        stored.policies.push(doc.clone());
    }
    stored
}

fn compile(docs: &StoredDocuments, limits: &Limits, what: &str) -> Result<PolicySet, String> {
    PolicySet::compile_with_apps(&docs.apps, &docs.issuers, &docs.policies, limits).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        format!(
            "{} error(s) in {what} (with --database-url, pass the broker's --config for its limits)",
            errors.len()
        )
    })
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
