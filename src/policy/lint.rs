//! Warnings: valid policies that are probably not what the admin meant.

use std::time::Duration;

use super::claim_path::ClaimKey;
use super::github::Level;
use super::issuer::{GITHUB_GUARDED_EVENTS, Issuer};
use super::owner::{self, SubjectPin};
use super::set::{DocError, PolicySet};
use super::{Kind, TrustPolicy};
use crate::policy::matcher::Matcher;

/// Names that their owner can rename (and someone else can then take), with the immutable
/// ids that pin them.
const RENAMABLE: &[(&str, &[&str])] = &[
    ("repository", &["repository_id"]),
    (
        "repository_owner",
        &["repository_owner_id", "repository_id"],
    ),
    ("project_path", &["project_id"]),
    ("namespace_path", &["namespace_id", "project_id"]),
];

/// GitLab's claims about the project a job runs in. For a merge request from a fork that
/// runs in the parent project they name the parent, while the code is the fork's (whose ids
/// `project_id` and `namespace_id` then carry).
const JOB_PROJECT: &[&str] = &[
    "job_project_id",
    "job_project_path",
    "job_namespace_id",
    "job_namespace_path",
];

/// Claims, beside the owner ids, that name a workload by an id nobody else can hold later:
/// a service account's uid changes when it is deleted and created again under its name.
const WORKLOAD_ID_CLAIMS: &[&str] = &[
    "/kubernetes.io/serviceaccount/uid",
    "/kubernetes.io/pod/uid",
];

/// Grant lifetimes above this draw a warning.
const LONG_TTL: Duration = Duration::from_secs(30 * 60);

/// Every warning for a compiled set.
pub fn warnings(set: &PolicySet) -> Vec<DocError> {
    let issuers = set.issuers().filter_map(|i| issuer_warning(i));
    issuers
        .chain(set.policies().flat_map(|p| policy_warnings(p)))
        .collect()
}

/// GitHub Enterprise Server's issuer (`https://HOST/_services/token`) sends the same events
/// as github.com, but only GitHub Actions' own URL guards them by default.
fn issuer_warning(issuer: &Issuer) -> Option<DocError> {
    let ghes = url::Url::parse(&issuer.url).is_ok_and(|u| u.path() == "/_services/token");
    (ghes && issuer.doc.guarded_events.is_none()).then(|| DocError {
        kind: Kind::Issuer,
        name: issuer.name.clone(),
        field: Some("url".into()),
        reason: format!(
            "looks like GitHub Enterprise Server: set `guarded_events: [{}]` (`[]` turns the \
             guard off) so policies written for `push` do not admit them",
            GITHUB_GUARDED_EVENTS.join(", ")
        ),
    })
}

fn policy_warnings(policy: &TrustPolicy) -> Vec<DocError> {
    let mut out = Vec::new();
    let mut warn = |field: &str, reason: String| {
        out.push(DocError {
            kind: Kind::TrustPolicy,
            name: policy.name.clone(),
            field: Some(field.into()),
            reason,
        });
    };
    // `x` and `/x` are the same claim.
    let has = |claim: &str| policy.claims.iter().any(|(k, _)| k.is(claim));
    for (name, ids) in RENAMABLE {
        if has(name) && !ids.iter().any(|id| has(id)) {
            warn(
                "claims",
                format!(
                    "trusts the renamable `{name}` without the immutable {}",
                    ids.join(" or ")
                ),
            );
        }
    }
    if JOB_PROJECT.iter().any(|c| has(c)) && !has("project_id") {
        warn(
            "claims",
            "`job_project_*` and `job_namespace_*` name the project a pipeline runs in: a merge \
             request from a fork runs in the parent project with the fork's code; pin \
             `project_id` (the fork's id in those pipelines) to keep forks out"
                .into(),
        );
    }
    let has_path = |path: &str| {
        ClaimKey::parse(path).is_ok_and(|key| policy.claims.iter().any(|(k, _)| *k == key))
    };
    let pinned_by_id = super::trust::OWNER_ID_CLAIMS.iter().any(|c| has(c))
        || WORKLOAD_ID_CLAIMS.iter().any(|c| has_path(c))
        || policy.subject_pin() == SubjectPin::Id;
    if let Some(subject) = &policy.subject {
        if !pinned_by_id {
            let advice = match owner::dash_owner_id(subject) {
                Some(id) => format!(
                    "an owner written `NAME-{id}` is GitHub's immutable form, or an owner whose \
                     name ends in `-{id}`: add `repository_owner_id: \"{id}\"` to pin the id"
                ),
                None => names_only(subject),
            };
            warn("subject", advice);
        }
        if !matches!(subject, Matcher::Exact(_)) && !policy.pins_owner() {
            warn(
                "subject",
                "has a wildcard in the owner position of the subject".into(),
            );
        }
    }
    if let Some(ttl) = policy.grant.ttl
        && ttl > LONG_TTL
    {
        warn(
            "grant.ttl",
            format!(
                "{} is long for a CI token; prefer 15m or less",
                humantime::format_duration(ttl)
            ),
        );
    }
    if let Some(github) = &policy.grant.github {
        if github.repositories.is_none() {
            warn(
                "grant.github",
                format!(
                    "grants every repository app {:?} is installed on in {:?} (and any added \
                     later); list `repositories` to narrow it",
                    github.app.name, github.owner
                ),
            );
        }
        let strong: Vec<&str> = (github.permissions.iter())
            .filter(|(name, level)| {
                **level >= Level::Write && POWERFUL_PERMISSIONS.contains(&name.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !strong.is_empty() {
            warn(
                "grant.github.permissions",
                format!(
                    "{} can change what runs in CI or who may change it: grant them only to \
                     the jobs that must",
                    strong.join(", ")
                ),
            );
        }
    }
    out
}

/// GitHub permissions whose write access reaches beyond the content of a repository.
const POWERFUL_PERMISSIONS: &[&str] = &[
    "administration",
    "organization_administration",
    "secrets",
    "organization_secrets",
    "workflows",
    "members",
];

/// The advice for a subject that pins names only.
fn names_only(subject: &Matcher) -> String {
    if owner::is_github_subject(subject) {
        "trusts names in `sub` only (a renamed or deleted owner's name can be taken by someone \
         else): use the immutable subject `repo:OWNER@OWNER_ID/…` (`repo:*@OWNER_ID/…` also \
         pins), or add `repository_owner_id` (and `repository_id`)"
            .into()
    } else {
        "trusts names in `sub` only; add an immutable id claim (repository_id, \
         repository_owner_id, project_id, namespace_id, /kubernetes.io/serviceaccount/uid)"
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{IssuerDoc, Limits, TrustPolicyDoc};
    use serde_json::{Value, json};

    /// The warnings of one policy over GitHub Actions' issuer (or `url`), as `field: reason`.
    fn lint(url: &str, policy: Value) -> Vec<String> {
        let issuer: IssuerDoc =
            serde_json::from_value(json!({"name": "i", "url": url, "audiences": ["sts"]})).unwrap();
        let mut doc = json!({"name": "p", "issuer": "i", "grant": {"audience": ["api"]}});
        doc.as_object_mut()
            .unwrap()
            .extend(policy.as_object().unwrap().clone());
        let doc: TrustPolicyDoc = serde_json::from_value(doc).unwrap();
        let limits = Limits {
            max_ttl: Duration::from_secs(3600),
            allow_insecure_loopback_issuers: false,
            read_app_keys: false,
        };
        let set = PolicySet::compile(&[issuer], &[doc], &limits).unwrap();
        warnings(&set)
            .into_iter()
            .map(|w| format!("{}: {}", w.field.unwrap_or_default(), w.reason))
            .collect()
    }

    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    #[test]
    fn names_only_subjects_get_the_immutable_form_suggested() {
        let w = lint(
            GITHUB,
            json!({"subject": {"glob": "repo:acme/*:ref:refs/heads/main"}}),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("repo:OWNER@OWNER_ID/") && w[0].contains("repository_owner_id"));
        // Pinned by id, either way: nothing to say.
        assert!(
            lint(
                GITHUB,
                json!({"subject": {"glob": "repo:*@2001/*:ref:refs/heads/main"}})
            )
            .is_empty()
        );
        assert!(
            lint(
                GITHUB,
                json!({"subject": {"glob": "repo:acme/*:ref:refs/heads/main"},
                       "claims": {"/repository_owner_id": "2001"}})
            )
            .is_empty()
        );
        // Another issuer's subject gets the general advice.
        let w = lint(
            "https://gitlab.com",
            json!({"subject": "project_path:acme/api:ref_type:branch:ref:main"}),
        );
        assert!(w[0].contains("add an immutable id claim"), "{w:?}");
    }

    #[test]
    fn a_service_account_uid_pins_a_kubernetes_subject() {
        let url = "https://kubernetes.default.svc.cluster.local";
        let sub = json!({"subject": "system:serviceaccount:payments:deploy"});
        let w = lint(url, sub.clone());
        assert!(w[0].contains("/kubernetes.io/serviceaccount/uid"), "{w:?}");
        let mut pinned = sub;
        pinned["claims"] = json!({"/kubernetes.io/serviceaccount/uid": "5a1c"});
        assert!(lint(url, pinned).is_empty());
    }

    #[test]
    fn a_dash_owner_gets_its_id_suggested() {
        let w = lint(
            GITHUB,
            json!({"subject": "repo:acme-2001/api-1001:ref:refs/heads/main"}),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("repository_owner_id: \"2001\""), "{w:?}");
        let pinned = json!({"subject": "repo:acme-2001/api-1001:ref:refs/heads/main",
                            "claims": {"repository_owner_id": "2001"}});
        assert!(lint(GITHUB, pinned).is_empty());
    }

    #[test]
    fn job_project_claims_without_project_id() {
        let url = "https://gitlab.example.com";
        let w = lint(
            url,
            json!({"claims": {"job_project_id": "7", "namespace_id": "3"}}),
        );
        assert!(w.iter().any(|w| w.contains("fork")), "{w:?}");
        let w = lint(
            url,
            json!({"claims": {"job_project_id": "7", "/project_id": "7"}}),
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn renamable_names_are_found_by_pointer_too() {
        let w = lint(
            GITHUB,
            json!({"claims": {"/repository": "acme/api", "repository_owner_id": "2001"}}),
        );
        assert!(
            w.iter().any(|w| w.contains("renamable `repository`")),
            "{w:?}"
        );
    }

    #[test]
    fn ghes_issuers_without_guarded_events() {
        let w = lint(
            "https://ghes.example/_services/token",
            json!({"claims": {"repository_id": "1"}}),
        );
        assert!(
            w.iter()
                .any(|w| w.starts_with("url: ") && w.contains("guarded_events")),
            "{w:?}"
        );
    }

    #[test]
    fn github_grants_of_every_repository_or_of_ci_itself_are_warned_about() {
        let app: crate::policy::GitHubAppDoc =
            serde_json::from_value(json!({"name": "bot", "app_id": 1, "private_key_env": "K"}))
                .unwrap();
        let issuer: IssuerDoc = serde_json::from_value(
            json!({"name": "i", "url": "https://ci.example", "audiences": ["sts"]}),
        )
        .unwrap();
        let warned = |github: Value| {
            let doc: TrustPolicyDoc = serde_json::from_value(json!({"name": "p", "issuer": "i",
                "subject": "s", "claims": {"repository_owner_id": "1"}, "grant": {"github": github}}))
            .unwrap();
            let limits = Limits {
                max_ttl: Duration::from_secs(3600),
                allow_insecure_loopback_issuers: false,
                read_app_keys: false,
            };
            let set = PolicySet::compile_with_apps(
                std::slice::from_ref(&app),
                std::slice::from_ref(&issuer),
                &[doc],
                &limits,
            )
            .unwrap();
            warnings(&set)
                .into_iter()
                .map(|w| w.field.unwrap_or_default())
                .collect::<Vec<_>>()
        };
        let narrow = json!({"app": "bot", "owner": "acme", "repositories": ["api"],
                            "permissions": {"contents": "write"}});
        assert!(warned(narrow.clone()).is_empty());
        let mut every = narrow.clone();
        every.as_object_mut().unwrap().remove("repositories");
        assert_eq!(warned(every), ["grant.github"]);
        let mut workflows = narrow;
        workflows["permissions"] = json!({"workflows": "write"});
        assert_eq!(warned(workflows), ["grant.github.permissions"]);
    }
}
