//! Does a policy pin an owner? The check a shared issuer (anyone can get a token from it)
//! demands of every policy, like GCP's mandatory attribute condition.
//!
//! An owner is pinned by an immutable id claim matched exactly, or by a subject whose owner
//! part cannot match another owner: a literal name (`repo:acme/…`), or GitHub's immutable
//! form with a literal id after `@` (`repo:*@2001/…`).

use super::claim_path::ClaimKey;
use super::matcher::Matcher;

/// Claims that identify an owner by an immutable id: matching one exactly pins the owner.
pub const OWNER_ID_CLAIMS: &[&str] = &[
    "repository_owner_id",
    "repository_id",
    "namespace_id",
    "project_id",
    "terraform_organization_id",
    "organization_id",
    "owner_id",
];

/// How a subject matcher pins the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectPin {
    /// Another owner's tokens can match.
    None,
    /// Only an owner of this name: someone else may hold the name later.
    Name,
    /// Only the owner with this id (`repo:NAME@ID/…`, the name literal or not).
    Id,
}

/// True when an id claim of `claims` is matched exactly (`x` and `/x` are one claim).
pub fn pins_by_id_claim<'a>(claims: impl IntoIterator<Item = (&'a ClaimKey, &'a Matcher)>) -> bool {
    claims.into_iter().any(|(key, m)| {
        key.top_level()
            .is_some_and(|name| OWNER_ID_CLAIMS.contains(&name))
            && m.is_exact()
    })
}

/// How `subject` pins the owner.
pub fn subject_pin(subject: &Matcher) -> SubjectPin {
    if let Some(pin) = github_subject_pin(subject) {
        return pin;
    }
    match subject {
        Matcher::Exact(_) => SubjectPin::Name,
        m if owner_part_is_literal(&m.literal_prefix()) => SubjectPin::Name,
        _ => SubjectPin::None,
    }
}

/// GitHub's `repo:OWNER/…`, where OWNER is a name, or (immutable subjects) a name and the
/// owner's id: `acme-2001` as GitHub writes it, or `acme@2001`.
///
/// A wildcard name followed by `@` and literal digits pins the id: a name cannot contain `@`,
/// and nobody chooses their id. The same with `-` does not (`repo:*-2001/…`): a name may itself
/// end in `-2001`, so an old-form subject of an organisation named `evil-2001` would match.
/// A regex never pins by id: its owner part is whatever its literal prefix says. `None` when
/// the subject is not a GitHub one (the generic analysis decides).
fn github_subject_pin(subject: &Matcher) -> Option<SubjectPin> {
    let text = match subject {
        Matcher::Exact(v) => v.as_str(),
        Matcher::Glob(glob) => glob.source(),
        Matcher::Pattern { .. } | Matcher::OneOf(_) => return None,
    };
    let owner = text.strip_prefix("repo:")?.split_once('/')?.0;
    if owner.is_empty() || owner.contains(':') {
        return None;
    }
    let literal = matches!(subject, Matcher::Exact(_)) || !owner.contains('*');
    let by_id = owner
        .rsplit_once('@')
        .is_some_and(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    Some(match (literal, by_id) {
        (_, true) if !owner.contains("**") => SubjectPin::Id,
        (true, _) => SubjectPin::Name,
        (false, _) => SubjectPin::None,
    })
}

/// For a literal GitHub owner part written `NAME-DIGITS`: the digits. It may be the immutable
/// subject (owner `NAME`, id DIGITS) or an old-form owner so named; lint suggests pinning
/// `repository_owner_id` beside it.
pub fn dash_owner_id(subject: &Matcher) -> Option<&str> {
    let text = match subject {
        Matcher::Exact(v) => v.as_str(),
        Matcher::Glob(glob) => glob.source(),
        _ => return None,
    };
    let owner = text.strip_prefix("repo:")?.split_once('/')?.0;
    let (name, id) = owner.rsplit_once('-')?;
    let literal = !owner.contains('*') || matches!(subject, Matcher::Exact(_));
    (literal && !name.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .then_some(id)
}

/// Whether a subject is GitHub's (`repo:…`), for advice that names GitHub's claims.
pub fn is_github_subject(subject: &Matcher) -> bool {
    match subject {
        Matcher::Exact(v) => v.starts_with("repo:"),
        m => m.literal_prefix().starts_with("repo:"),
    }
}

/// `kind:owner/…` or `kind:owner:…` with no wildcard up to and including the owner's end.
pub(crate) fn owner_part_is_literal(prefix: &str) -> bool {
    let Some((kind, rest)) = prefix.split_once(':') else {
        return false;
    };
    let owner_len = rest.find(['/', ':']);
    !kind.is_empty() && owner_len.is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::document::MatcherDoc;
    use proptest::prelude::*;
    use serde_json::json;

    fn glob(g: &str) -> Matcher {
        Matcher::compile(&MatcherDoc::Glob(g.into())).unwrap()
    }
    fn regex(r: &str) -> Matcher {
        Matcher::compile(&MatcherDoc::Regex(r.into())).unwrap()
    }
    fn exact(v: &str) -> Matcher {
        Matcher::compile(&MatcherDoc::Exact(v.into())).unwrap()
    }

    #[test]
    fn owner_parts() {
        assert!(owner_part_is_literal("repo:acme/"));
        assert!(owner_part_is_literal("project_path:group/"));
        assert!(owner_part_is_literal("organization:acme:"));
        assert!(!owner_part_is_literal("repo:acme"));
        assert!(!owner_part_is_literal("repo:"));
        assert!(!owner_part_is_literal("repo:/"));
        assert!(!owner_part_is_literal(""));
    }

    #[test]
    fn a_quantified_separator_does_not_pin_the_owner() {
        for bypass in ["repo:acme/+*.*", "repo:acme/+{0}.*", "repo:acme/{0,}.*"] {
            assert_eq!(subject_pin(&regex(bypass)), SubjectPin::None, "{bypass}");
        }
        assert_eq!(subject_pin(&regex("repo:acme/.*")), SubjectPin::Name);
        assert_eq!(
            subject_pin(&regex("repo:acme/(api|web):.*")),
            SubjectPin::Name
        );
    }

    #[test]
    fn immutable_subjects() {
        use SubjectPin::*;
        let rows: &[(Matcher, SubjectPin)] = &[
            // A wildcard name with a literal id after `@`.
            (glob("repo:*@2001/*:ref:refs/heads/main"), Id),
            (glob("repo:*@2001/**"), Id),
            (glob("repo:a*@2001/api@*:**"), Id),
            (exact("repo:acme@2001/api@1001:ref:refs/heads/main"), Id),
            (glob("repo:acme@2001/*"), Id),
            // The `-` form pins by name only, and only when literal.
            (glob("repo:*-2001/*:ref:refs/heads/main"), None),
            (glob("repo:acme-2001/*"), Name),
            (exact("repo:acme-2001/api-1001:ref:refs/heads/main"), Name),
            // Any wildcard in the id.
            (glob("repo:*@*/*"), None),
            (glob("repo:*@20*/*"), None),
            (glob("repo:*@2001*/*"), None),
            (glob("repo:acme@*/*"), None),
            (glob("repo:*@/*"), None),
            // `**` crosses `/` and `:`: the owner part would not end where it seems to.
            (glob("repo:**@2001/*"), None),
            (glob("repo:*@2001**/*"), None),
            // A regex never pins by id.
            (regex("repo:[a-z]+@2001/.*"), None),
            (regex("repo:.*@2001/.*"), None),
            (regex("repo:acme@2001/.*"), Name),
            // Plain names, as before.
            (glob("repo:acme/*:ref:refs/heads/*"), Name),
            (glob("repo:*/api:*"), None),
            (glob("repo:acme*/**"), None),
            (exact("repo:acme/api:ref:refs/heads/main"), Name),
            (glob("project_path:acme/*:ref_type:branch:ref:**"), Name),
            (glob("organization:acme:pipeline:*"), Name),
        ];
        for (matcher, want) in rows {
            assert_eq!(subject_pin(matcher), *want, "{}", matcher.describe());
        }
    }

    #[test]
    fn dash_owner_ids() {
        assert_eq!(
            dash_owner_id(&exact("repo:acme-2001/api:ref:x")),
            Some("2001")
        );
        assert_eq!(dash_owner_id(&glob("repo:acme-2001/*")), Some("2001"));
        assert_eq!(dash_owner_id(&glob("repo:*-2001/*")), None);
        assert_eq!(dash_owner_id(&glob("repo:acme/*")), None);
        assert_eq!(dash_owner_id(&glob("repo:acme-x/*")), None);
        assert_eq!(dash_owner_id(&glob("repo:-2001/*")), None);
    }

    /// Old-form owner names (a GitHub login: letters, digits, single `-`) and ids.
    fn owner_name() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}(-[a-z0-9]{1,4}){0,2}"
    }

    proptest! {
        /// Whatever an attacker names their organisation, no subject of theirs (old form, or
        /// immutable with their own id in either spelling) matches a subject that pins
        /// another owner's id.
        #[test]
        fn a_name_never_passes_for_an_id(
            name in owner_name(),
            id in 1u32..1_000_000,
            victim in 1u32..1_000_000,
            repo in "[a-z]{1,5}",
            name_glob in prop::sample::select(vec!["*", "a*", "*a", "*-*"]),
        ) {
            prop_assume!(id != victim);
            let policy = glob(&format!("repo:{name_glob}@{victim}/*:ref:refs/heads/main"));
            prop_assert_eq!(subject_pin(&policy), SubjectPin::Id);
            let forms = [
                format!("repo:{name}/{repo}:ref:refs/heads/main"),
                format!("repo:{name}-{victim}/{repo}:ref:refs/heads/main"),
                format!("repo:{name}-{id}/{repo}-7:ref:refs/heads/main"),
                format!("repo:{name}@{id}/{repo}@7:ref:refs/heads/main"),
            ];
            for sub in forms {
                prop_assert!(!policy.matches(&json!(sub)), "{} admits {}", policy.describe(), sub);
            }
            // The victim itself, under any name, still matches.
            let own = format!("repo:{name}@{victim}/{repo}@7:ref:refs/heads/main");
            let name_matches = glob(&format!("repo:{name_glob}/x")).matches(&json!(format!("repo:{name}/x")));
            prop_assert_eq!(policy.matches(&json!(own)), name_matches);
        }

        /// The `-` form with a wildcard name is refused because it is not safe: an old-form
        /// subject of an owner named `<anything>-<victim id>` matches it.
        #[test]
        fn the_dash_form_with_a_wildcard_name_is_not_an_id(victim in 1u32..1_000_000) {
            let policy = glob(&format!("repo:*-{victim}/*:ref:refs/heads/main"));
            prop_assert_eq!(subject_pin(&policy), SubjectPin::None);
            let evil = format!("repo:evil-{victim}/x:ref:refs/heads/main");
            prop_assert!(policy.matches(&json!(evil)));
        }
    }
}
