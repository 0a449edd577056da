//! Warnings: valid policies that are probably not what the admin meant.

use std::time::Duration;

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

/// Grant lifetimes above this draw a warning.
const LONG_TTL: Duration = Duration::from_secs(30 * 60);

/// Every warning for a compiled set.
pub fn warnings(set: &PolicySet) -> Vec<DocError> {
    set.policies().flat_map(|p| policy_warnings(p)).collect()
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
    let has = |claim: &str| policy.claims.iter().any(|(n, _)| n == claim);
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
    let pinned_by_id = super::trust::OWNER_ID_CLAIMS.iter().any(|c| has(c));
    if let Some(subject) = &policy.subject {
        if !pinned_by_id {
            warn("subject", "trusts names in `sub` only; add an immutable id claim (repository_id, repository_owner_id, project_id, namespace_id)".into());
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
    out
}
