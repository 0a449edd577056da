//! The whole set of issuers and trust policies, validated together and indexed for the
//! exchange path: issuer by exact URL, policies by issuer in name order and by the claim
//! most of them match exactly (see [`super::index`]).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::document::{GitHubAppDoc, IssuerDoc, Kind, TrustPolicyDoc};
use super::github::GitHubApp;
use super::index::IssuerPolicies;
use super::issuer::Issuer;
use super::matcher::RegexCache;
use super::trust::TrustPolicy;

/// Settings that bound what documents may say.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// No policy ttl may exceed this.
    pub max_ttl: Duration,
    /// Accept `http://` loopback issuer URLs (and GitHub API URLs).
    pub allow_insecure_loopback_issuers: bool,
    /// Read and parse GitHub Apps' private keys (serving). Lint and offline checks leave
    /// them alone: the key lives where the broker runs, not where policies are reviewed.
    pub read_app_keys: bool,
}

/// Why one document was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct DocError {
    /// Which kind of document.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The field at fault (dotted path), when there is one.
    pub field: Option<String>,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for DocError {
    /// `TrustPolicy "name": field.path: reason`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind.as_str(), self.name)?;
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The compiled set; immutable, swapped whole when anything changes.
#[derive(Debug, Default)]
pub struct PolicySet {
    apps: BTreeMap<String, Arc<GitHubApp>>,
    issuers_by_url: HashMap<String, Arc<Issuer>>,
    issuers_by_name: BTreeMap<String, Arc<Issuer>>,
    policies: BTreeMap<String, Arc<TrustPolicy>>,
    by_issuer: HashMap<String, IssuerPolicies>,
}

impl PolicySet {
    /// Validates every document and the references between them. All or nothing: any error
    /// and no set is built.
    pub fn compile<I: Borrow<IssuerDoc>, P: Borrow<TrustPolicyDoc>>(
        issuers: &[I],
        policies: &[P],
        limits: &Limits,
    ) -> Result<Self, Vec<DocError>> {
        Self::compile_with_apps::<&GitHubAppDoc, I, P>(&[], issuers, policies, limits)
    }

    /// [`PolicySet::compile`], with the GitHub Apps that policies may grant tokens of.
    pub fn compile_with_apps<
        A: Borrow<GitHubAppDoc>,
        I: Borrow<IssuerDoc>,
        P: Borrow<TrustPolicyDoc>,
    >(
        apps: &[A],
        issuers: &[I],
        policies: &[P],
        limits: &Limits,
    ) -> Result<Self, Vec<DocError>> {
        let mut errors = Vec::new();
        let mut set = PolicySet::default();
        let mut regexes = RegexCache::default();
        for doc in apps.iter().map(Borrow::borrow) {
            let fail = |field: &str, reason: String| DocError {
                kind: Kind::GitHubApp,
                name: doc.name.clone(),
                field: Some(field.to_owned()),
                reason,
            };
            if set.apps.contains_key(&doc.name) {
                errors.push(fail("name", "duplicate GitHubApp name".into()));
                continue;
            }
            let compiled = GitHubApp::compile(
                doc,
                limits.allow_insecure_loopback_issuers,
                limits.read_app_keys,
            );
            match compiled {
                Ok(app) => {
                    set.apps.insert(app.name.clone(), Arc::new(app));
                }
                Err((field, reason)) => errors.push(fail(&field, reason)),
            }
        }
        for doc in issuers.iter().map(Borrow::borrow) {
            let fail = |field: Option<String>, reason: String| DocError {
                kind: Kind::Issuer,
                name: doc.name.clone(),
                field,
                reason,
            };
            if set.issuers_by_name.contains_key(&doc.name) {
                errors.push(fail(Some("name".into()), "duplicate issuer name".into()));
                continue;
            }
            match Issuer::compile(doc, limits.allow_insecure_loopback_issuers) {
                Ok(issuer) => {
                    if let Some(other) = set.issuers_by_url.get(&issuer.url) {
                        errors.push(fail(
                            Some("url".into()),
                            format!("issuer {:?} already has this url", other.name),
                        ));
                        continue;
                    }
                    let issuer = Arc::new(issuer);
                    set.issuers_by_url
                        .insert(issuer.url.clone(), issuer.clone());
                    set.issuers_by_name.insert(issuer.name.clone(), issuer);
                }
                Err((field, reason)) => errors.push(fail(Some(field), reason)),
            }
        }
        for doc in policies.iter().map(Borrow::borrow) {
            let fail = |field: &str, reason: String| DocError {
                kind: Kind::TrustPolicy,
                name: doc.name.clone(),
                field: Some(field.to_owned()),
                reason,
            };
            if set.policies.contains_key(&doc.name) {
                errors.push(fail("name", "duplicate policy name".into()));
                continue;
            }
            let Some(issuer) = set.issuers_by_name.get(&doc.issuer) else {
                let exists = issuers.iter().any(|i| i.borrow().name == doc.issuer);
                let why = if exists {
                    "names an invalid issuer"
                } else {
                    "names an unknown issuer"
                };
                errors.push(fail("issuer", format!("{why} {:?}", doc.issuer)));
                continue;
            };
            let compiled =
                TrustPolicy::compile(doc, issuer, &set.apps, limits.max_ttl, &mut regexes);
            match compiled {
                Ok(policy) => {
                    set.policies.insert(policy.name.clone(), Arc::new(policy));
                }
                Err((field, reason)) => errors.push(fail(&field, reason)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // BTreeMap iteration is in name order, so each issuer's list is too.
        let mut by_issuer: HashMap<String, Vec<Arc<TrustPolicy>>> = HashMap::new();
        for policy in set.policies.values() {
            by_issuer
                .entry(policy.issuer.clone())
                .or_default()
                .push(policy.clone());
        }
        set.by_issuer = by_issuer
            .into_iter()
            .map(|(issuer, policies)| (issuer, IssuerPolicies::build(policies)))
            .collect();
        Ok(set)
    }

    /// The issuer whose URL is exactly `iss`.
    pub fn issuer_by_url(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.issuers_by_url.get(iss)
    }

    /// An issuer by name.
    pub fn issuer(&self, name: &str) -> Option<&Arc<Issuer>> {
        self.issuers_by_name.get(name)
    }

    /// The policies judging an issuer's tokens, in name order.
    pub fn policies_for(&self, issuer_name: &str) -> &[Arc<TrustPolicy>] {
        self.by_issuer
            .get(issuer_name)
            .map_or(&[], IssuerPolicies::all)
    }

    /// Those of an issuer's policies that could admit a token with these claims, in name
    /// order: the first of them that admits it is the first of all that would.
    pub fn candidates<'a>(
        &'a self,
        issuer_name: &str,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Box<dyn Iterator<Item = &'a Arc<TrustPolicy>> + 'a> {
        match self.by_issuer.get(issuer_name) {
            Some(policies) => policies.candidates(claims),
            None => Box::new(std::iter::empty()),
        }
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<&Arc<TrustPolicy>> {
        self.policies.get(name)
    }

    /// Every issuer, in name order.
    pub fn issuers(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.issuers_by_name.values()
    }

    /// Every GitHub App, in name order.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<GitHubApp>> {
        self.apps.values()
    }

    /// Every policy, in name order.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<TrustPolicy>> {
        self.policies.values()
    }
}
