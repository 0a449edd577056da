//! What differed between a case's expectation and the broker's answer, as short readable
//! lines: `decision: expected allow, got deny (not_admitted)`, `token.sub: expected "a",
//! got "b"`.

use serde_json::Value;

use super::Actual;
use std::collections::BTreeMap;

use crate::policy::github::GitHubRequest;
use crate::policy::test_case::{Decision, ExpectDoc, ExpectGitHubDoc};

/// Most policies named under a denial that was expected to be an allow.
const WHY_POLICIES: usize = 3;

/// Every difference; empty when the answer is as expected.
pub fn differences(expect: &ExpectDoc, actual: &Actual) -> Vec<String> {
    if expect.decision != actual.decision {
        return vec![decision(expect, actual)];
    }
    let mut out = Vec::new();
    if let Some(want) = &expect.policy
        && actual.policy.as_ref() != Some(want)
    {
        out.push(format!(
            "policy: expected {want:?}, got {}",
            shown(&actual.policy)
        ));
    }
    if let Some(want) = &expect.reason
        && want != actual.reason
    {
        out.push(format!("reason: expected {want}, got {}", actual.reason));
    }
    if expect.token.is_some() && actual.github.is_some() {
        out.push("token: a GitHub grant issues no broker token; expect `github`".into());
    }
    if let Some(want) = &expect.github {
        out.extend(github(want, actual.github.as_ref()));
    }
    if let (Some(want), Some(got)) = (&expect.token, &actual.token) {
        for (name, value) in want {
            let value = expected_claim(name, value);
            match got.get(name) {
                None => out.push(format!("token.{name}: expected {}, absent", json(value))),
                Some(g) if g != value => out.push(format!(
                    "token.{name}: expected {}, got {}",
                    json(value),
                    json(g)
                )),
                Some(_) => {}
            }
        }
    }
    out
}

/// What differed in the GitHub token asked for.
fn github(want: &ExpectGitHubDoc, got: Option<&GitHubRequest>) -> Vec<String> {
    let Some(got) = got else {
        return vec!["github: expected a GitHub grant, got a broker token".into()];
    };
    let mut out = Vec::new();
    if let Some(owner) = &want.owner
        && *owner != got.owner
    {
        out.push(format!(
            "github.owner: expected {owner:?}, got {:?}",
            got.owner
        ));
    }
    let repositories = got.repositories.clone().unwrap_or_default();
    if let Some(want) = &want.repositories
        && *want != repositories
    {
        out.push(format!(
            "github.repositories: expected {want:?}, got {repositories:?}"
        ));
    }
    let permissions: BTreeMap<String, String> = (got.permissions.iter())
        .map(|(name, level)| (name.clone(), level.as_str().to_owned()))
        .collect();
    if let Some(want) = &want.permissions
        && *want != permissions
    {
        out.push(format!(
            "github.permissions: expected {want:?}, got {permissions:?}"
        ));
    }
    out
}

/// The decision was not the one expected: say what it was, and for an unexpected denial
/// why each policy said no, since that is what the admin must fix.
fn decision(expect: &ExpectDoc, actual: &Actual) -> String {
    let mut line = format!(
        "decision: expected {}, got {}",
        expect.decision.as_str(),
        actual.decision.as_str()
    );
    match actual.decision {
        Decision::Allow => line.push_str(&format!(" (policy {})", shown(&actual.policy))),
        Decision::Deny => {
            line.push_str(&format!(" ({})", actual.reason));
            let why: Vec<&str> = actual
                .why
                .iter()
                .filter(|w| {
                    expect
                        .policy
                        .as_ref()
                        .is_none_or(|p| w.starts_with(&format!("policy {p}:")))
                })
                .take(WHY_POLICIES)
                .map(String::as_str)
                .collect();
            if !why.is_empty() {
                line.push_str(&format!(": {}", why.join("; ")));
            }
        }
    }
    line
}

/// `aud` may be written as a one-element list: an issued token with one audience carries
/// it as a string.
fn expected_claim<'a>(name: &str, value: &'a Value) -> &'a Value {
    match value {
        Value::Array(one) if name == "aud" && one.len() == 1 => &one[0],
        other => other,
    }
}

fn shown(name: &Option<String>) -> String {
    name.as_ref()
        .map_or_else(|| "none".to_owned(), |n| format!("{n:?}"))
}

fn json(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn expect(v: Value) -> ExpectDoc {
        serde_json::from_value(v).unwrap()
    }

    fn allowed(token: Value) -> Actual {
        Actual {
            decision: Decision::Allow,
            policy: Some("p".into()),
            reason: "issued",
            token: token.as_object().cloned(),
            github: None,
            why: Vec::new(),
        }
    }

    #[test]
    fn an_answer_as_expected_has_no_difference() {
        let want = expect(
            json!({"decision": "allow", "policy": "p", "reason": "issued",
            "token": {"sub": "gh:x", "aud": ["api"], "groups": ["a", "b"]}}),
        );
        let got = allowed(json!({"sub": "gh:x", "aud": "api", "groups": ["a", "b"], "iat": 1}));
        assert_eq!(differences(&want, &got), Vec::<String>::new());
    }

    #[test]
    fn each_difference_is_named() {
        let want = expect(
            json!({"decision": "allow", "policy": "q", "reason": "issued",
            "token": {"sub": "gh:y", "aud": ["api", "web"], "run_id": 7, "actor": "octo"}}),
        );
        let got = allowed(json!({"sub": "gh:x", "aud": "api", "run_id": "7"}));
        assert_eq!(
            differences(&want, &got),
            [
                "policy: expected \"q\", got \"p\"",
                "token.actor: expected \"octo\", absent",
                "token.aud: expected [\"api\",\"web\"], got \"api\"",
                "token.run_id: expected 7, got \"7\"",
                "token.sub: expected \"gh:y\", got \"gh:x\"",
            ]
        );
    }

    #[test]
    fn an_unexpected_denial_says_why() {
        let want = expect(json!({"decision": "allow", "policy": "p"}));
        let got = Actual {
            decision: Decision::Deny,
            policy: None,
            reason: "not_admitted",
            token: None,
            github: None,
            why: vec![
                "policy o: sub expected equals \"x\", got \"y\"".into(),
                "policy p: ref expected equals \"main\", got \"dev\"".into(),
            ],
        };
        assert_eq!(
            differences(&want, &got),
            [
                "decision: expected allow, got deny (not_admitted): policy p: ref expected equals \"main\", got \"dev\""
            ]
        );
        let want = expect(json!({"decision": "deny", "reason": "scope_not_granted"}));
        assert_eq!(
            differences(&want, &allowed(json!({}))),
            ["decision: expected deny, got allow (policy \"p\")"]
        );
    }

    #[test]
    fn a_github_grant_is_compared_by_what_github_is_asked() {
        use crate::policy::github::Level;
        let got = Actual {
            github: Some(GitHubRequest {
                app: "bot".into(),
                owner: "acme".into(),
                repositories: Some(vec!["api".into()]),
                permissions: BTreeMap::from([("contents".into(), Level::Write)]),
            }),
            token: None,
            ..allowed(json!({}))
        };
        let ok = expect(json!({"decision": "allow", "github": {"owner": "acme",
            "repositories": ["api"], "permissions": {"contents": "write"}}}));
        assert!(differences(&ok, &got).is_empty());
        let wrong = expect(
            json!({"decision": "allow", "github": {"repositories": ["api", "web"],
            "permissions": {"contents": "read"}}}),
        );
        assert_eq!(
            differences(&wrong, &got),
            [
                "github.repositories: expected [\"api\", \"web\"], got [\"api\"]",
                "github.permissions: expected {\"contents\": \"read\"}, got {\"contents\": \"write\"}"
            ]
        );
        let token = expect(json!({"decision": "allow", "token": {"sub": "x"}}));
        assert_eq!(differences(&token, &got).len(), 1);
        let broker = expect(json!({"decision": "allow", "github": {"owner": "acme"}}));
        assert_eq!(
            differences(&broker, &allowed(json!({"sub": "x"}))),
            ["github: expected a GitHub grant, got a broker token"]
        );
    }
}
