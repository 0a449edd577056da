//! One test case: the document made runnable against a policy set, and its run.

use serde_json::{Map, Value};

use super::Minting;
use crate::exchange::{ExchangeRequest, Trace, decide, issued_claims};
use crate::inbound::Validated;
use crate::policy::github::GitHubRequest;
use crate::policy::load::{LoadError, Origin};
use crate::policy::test_case::{Decision, ExpectDoc, PolicyTestDoc};
use crate::policy::{PolicySet, trust};

/// A case ready to run.
#[derive(Debug)]
pub struct Case {
    /// The test's name.
    pub name: String,
    token: Validated,
    request: ExchangeRequest,
    now: i64,
    expect: ExpectDoc,
}

/// What the broker decided, as a test compares it.
#[derive(Debug)]
pub struct Actual {
    /// Issued or not.
    pub decision: Decision,
    /// The policy the decision is filed under (as in the audit record).
    pub policy: Option<String>,
    /// The audit reason code.
    pub reason: &'static str,
    /// The issued token's claims, when a broker token was issued.
    pub token: Option<Map<String, Value>>,
    /// What GitHub would be asked for, when a GitHub token was granted.
    pub github: Option<GitHubRequest>,
    /// For a denial: each policy of the issuer with the first check it failed.
    pub why: Vec<String>,
}

/// What a document asks, checked as far as it can be without the policies.
struct Asked {
    now: Option<i64>,
    subject: String,
    jti: Option<String>,
    exp: i64,
    request: ExchangeRequest,
}

impl Case {
    /// `doc` made runnable against `set`. `wall_now` is the time of a decision when the
    /// document names none and its claims have no `iat`.
    pub fn compile(
        doc: PolicyTestDoc,
        origin: &Origin,
        set: &PolicySet,
        wall_now: i64,
    ) -> Result<Self, LoadError> {
        let asked = asked(&doc, origin)?;
        check_names(&doc, origin, set)?;
        let issuer = set
            .issuer(&doc.issuer)
            .ok_or_else(|| origin.error_at("issuer", "unknown issuer"))?
            .clone();
        Ok(Case {
            name: doc.name,
            now: asked.now.unwrap_or(wall_now),
            token: Validated {
                issuer,
                claims: doc.claims,
                payload: None,
                subject: asked.subject,
                jti: asked.jti,
                exp: asked.exp,
            },
            request: asked.request,
            expect: doc.expect,
        })
    }

    /// Runs the case: the decision `/token` would make at the case's `now`, and the claims
    /// of the token it would issue.
    pub fn run(&self, set: &PolicySet, minting: &Minting) -> Actual {
        match decide(set, &self.token, &self.request, None) {
            // A GitHub token is GitHub's: the case sees what would be asked for.
            Ok(decided) if decided.github.is_some() => Actual {
                decision: Decision::Allow,
                policy: Some(decided.policy.name.clone()),
                reason: "issued",
                token: None,
                github: decided.github,
                why: Vec::new(),
            },
            Ok(decided) => {
                // A fresh jti, as every issued token has; a test that pins one fails, as it
                // should: no two tokens share one.
                let jti = uuid::Uuid::new_v4().to_string();
                let issued = issued_claims(
                    &minting.issuer_url,
                    minting.lifetimes,
                    &self.token,
                    &decided,
                    self.now,
                    &jti,
                );
                Actual {
                    decision: Decision::Allow,
                    policy: Some(decided.policy.name.clone()),
                    reason: "issued",
                    token: Some(issued.claims),
                    github: None,
                    why: Vec::new(),
                }
            }
            Err(e) => {
                // As the server does on a denial: decide again with a trace, for the policy
                // the denial is filed under; complete here, since an admin reads it.
                let mut trace = Trace::complete();
                let _ = decide(set, &self.token, &self.request, Some(&mut trace));
                Actual {
                    decision: Decision::Deny,
                    policy: trace.denying_policy().map(str::to_owned),
                    reason: e.code(),
                    token: None,
                    github: None,
                    why: why(&trace),
                }
            }
        }
    }

    /// What the case expects.
    pub fn expect(&self) -> &ExpectDoc {
        &self.expect
    }
}

/// Checks a document as far as it can be checked: without `set`, only what it says itself.
pub(super) fn check(
    doc: &PolicyTestDoc,
    origin: &Origin,
    set: Option<&PolicySet>,
) -> Result<(), LoadError> {
    asked(doc, origin)?;
    match set {
        Some(set) => check_names(doc, origin, set),
        None => Ok(()),
    }
}

/// The names a document gives must be in the set: a misspelt policy in `expect` would
/// otherwise read as a failing case rather than a broken one.
fn check_names(doc: &PolicyTestDoc, origin: &Origin, set: &PolicySet) -> Result<(), LoadError> {
    if set.issuer(&doc.issuer).is_none() {
        return Err(origin.error_at(
            "issuer",
            format!("unknown issuer {:?}: no Issuer of that name", doc.issuer),
        ));
    }
    if let Some(name) = &doc.expect.policy
        && set.policy(name).is_none()
    {
        return Err(origin.error_at("expect.policy", format!("no TrustPolicy named {name:?}")));
    }
    Ok(())
}

fn asked(doc: &PolicyTestDoc, origin: &Origin) -> Result<Asked, LoadError> {
    let now =
        match &doc.now {
            None => time(doc.claims.get("iat")),
            Some(value) => Some(text_or_seconds(value).ok_or_else(|| {
                origin.error_at("now", "expected an RFC 3339 time or Unix seconds")
            })?),
        };
    let subject = match doc.claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(origin.error_at(
                "claims.sub",
                "a validated token has a sub: a non-empty string",
            ));
        }
    };
    let scopes = match &doc.request.scope {
        None => None,
        Some(text) => Some(trust::requested_scopes(text).ok_or_else(|| {
            origin.error_at(
                "request.scope",
                "holds a character that a scope token may not (RFC 6749 §3.3)",
            )
        })?),
    };
    Ok(Asked {
        now,
        subject,
        jti: match doc.claims.get("jti") {
            Some(Value::String(j)) if !j.is_empty() => Some(j.clone()),
            _ => None,
        },
        // Without an exp the issued token lives its full ttl: nothing caps it.
        exp: time(doc.claims.get("exp")).unwrap_or(i64::MAX),
        request: ExchangeRequest {
            subject_token: String::new(),
            audience: doc.request.audience.clone(),
            scopes,
            policy: doc.request.policy.clone(),
            bare_github_target: false,
        },
    })
}

/// A NumericDate claim, as the validator reads one.
fn time(value: Option<&Value>) -> Option<i64> {
    let n = value?.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

fn text_or_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => crate::time::parse_time(s),
        other => time(Some(other)),
    }
}

/// Each policy the trace holds, with the first check it failed (or its outcome).
fn why(trace: &Trace) -> Vec<String> {
    trace
        .policies()
        .iter()
        .map(|p| match p.checks.iter().find(|c| !c.passed) {
            Some(c) => format!(
                "policy {}: {} expected {}, got {}",
                p.policy,
                c.check,
                c.expected,
                c.actual
                    .as_deref()
                    .map_or_else(|| "(absent)".to_owned(), |a| format!("{a:?}"))
            ),
            None => format!("policy {}: {}", p.policy, p.outcome),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::policy::Limits;
    use crate::policy::load::Bundle;
    use crate::policy::test_case;

    const POLICIES: &str = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\n---\nkind: TrustPolicy\nname: deploy\nissuer: gh\nsubject: repo:acme/api:ref:refs/heads/main\nclaims:\n  repository_id: \"42\"\ngrant:\n  audience: [api, web]\n  scopes: [deploy:write]\n  ttl: 10m\n  claims: {groups: \"{groups}\"}\n";

    const MINTING: Minting = Minting {
        issuer_url: String::new(),
        lifetimes: crate::exchange::Lifetimes {
            default_ttl: Duration::from_secs(900),
            max_ttl: Duration::from_secs(3600),
        },
    };

    fn set() -> PolicySet {
        let limits = Limits {
            max_ttl: Duration::from_secs(3600),
            allow_insecure_loopback_issuers: false,
            read_app_keys: false,
        };
        Bundle::parse_str(Path::new("p.yaml"), POLICIES)
            .unwrap()
            .compile_over(&[], &[], &limits)
            .unwrap()
    }

    /// The case of a test whose claims and request are `claims` and `request` (JSON).
    fn case(claims: Value, request: Value) -> Result<Case, String> {
        let text = format!(
            "kind: PolicyTest\nname: t\nissuer: gh\nclaims: {claims}\nrequest: {request}\nexpect: {{decision: allow}}\n"
        );
        let loaded = Bundle::read_text(Path::new("t.yaml"), &text);
        let origin = &loaded.tests[0];
        let doc = test_case::read(origin).map_err(|e| e.to_string())?;
        Case::compile(doc, origin, &set(), 5_000).map_err(|e| e.to_string())
    }

    fn main() -> Value {
        json!({"sub": "repo:acme/api:ref:refs/heads/main", "repository_id": 42, "groups": ["a", "b"]})
    }

    #[test]
    fn the_decision_and_token_are_the_servers() {
        let with = |extra: Value| {
            let mut c = main();
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let run =
            |claims: Value, request: Value| case(claims, request).unwrap().run(&set(), &MINTING);
        // now: the claims' iat; exp: capped by the subject token's.
        let actual = run(
            with(json!({"iat": 1000, "exp": 1300})),
            json!({"audience": "web"}),
        );
        let token = actual.token.unwrap();
        assert_eq!(actual.decision, Decision::Allow);
        assert_eq!((&token["iat"], &token["exp"]), (&json!(1000), &json!(1300)));
        assert_eq!(token["sub"], "gh:repo:acme/api:ref:refs/heads/main");
        assert_eq!(
            token["groups"],
            json!(["a", "b"]),
            "a one-claim template copies the value"
        );
        assert_eq!(token["scope"], "deploy:write");
        // Without iat, the wall clock; without exp, the policy's ttl.
        let token = run(main(), json!({"audience": "api"})).token.unwrap();
        assert_eq!((&token["iat"], &token["exp"]), (&json!(5000), &json!(5600)));
        // Denials carry the server's reason code and the policy they are filed under.
        let denied = run(main(), json!({}));
        assert_eq!(
            (denied.reason, denied.policy.as_deref()),
            ("audience_required", Some("deploy"))
        );
        let denied = run(main(), json!({"audience": "api", "scope": "deploy:admin"}));
        assert_eq!(denied.reason, "scope_not_granted");
        let denied = run(
            with(json!({"repository_id": "43"})),
            json!({"audience": "api"}),
        );
        assert_eq!((denied.reason, denied.policy), ("not_admitted", None));
        assert_eq!(
            denied.why,
            ["policy deploy: repository_id expected equals \"42\", got \"43\""]
        );
    }

    #[test]
    fn what_a_validated_token_cannot_be_is_refused() {
        let no_sub = json!({"repository_id": "42"});
        assert!(
            case(no_sub, json!({}))
                .unwrap_err()
                .starts_with("t.yaml:4: claims.sub:")
        );
        let bad_scope = json!({"scope": "deploy\"write"});
        assert!(
            case(main(), bad_scope)
                .unwrap_err()
                .starts_with("t.yaml:5: request.scope:")
        );
        let text = "kind: PolicyTest\nname: t\nissuer: gh\nnow: yesterday\nclaims: {sub: x}\nexpect: {decision: deny}\n";
        let loaded = Bundle::read_text(Path::new("t.yaml"), text);
        let doc = test_case::read(&loaded.tests[0]).unwrap();
        let e = Case::compile(doc, &loaded.tests[0], &set(), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.yaml:4: now: expected an RFC 3339 time or Unix seconds"
        );
    }
}
