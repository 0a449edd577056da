//! A trust policy, compiled: the matchers that admit a token and the grant it gets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::claim_path::ClaimKey;
use super::document::TrustPolicyDoc;
use super::github::{GitHubApp, GitHubGrant};
use super::issuer::Issuer;
use super::matcher::{Matcher, RegexCache, scalar_text};
use super::owner::{self, SubjectPin};
use super::template::Template;

pub use super::owner::OWNER_ID_CLAIMS;

/// The claim that guarded events are about.
const EVENT_NAME: &str = "event_name";

/// Claims the broker sets itself; a policy may not map over them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "scope",
    "client_id",
    "act",
    "may_act",
    "cnf",
];

/// What an admitted token may get.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Possible `aud` values of the issued token (none with `github`).
    pub audience: Vec<String>,
    /// A GitHub installation token instead of a broker token. Boxed: most policies grant
    /// none, and inline it made every compiled policy 72 bytes larger.
    pub github: Option<Box<GitHubGrant>>,
    /// Scopes it may carry.
    pub scopes: Vec<String>,
    /// Lifetime ceiling, if the policy sets one.
    pub ttl: Option<Duration>,
    /// Template of the issued subject.
    pub subject: Option<Template>,
    /// Mapped claims.
    pub claims: Vec<(String, Template)>,
}

/// A compiled trust policy.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Unique name.
    pub name: String,
    /// Issuer name.
    pub issuer: String,
    /// Matcher for `sub`.
    pub subject: Option<Matcher>,
    /// Matchers for other claims (names or JSON Pointers), in the sorted order of their
    /// keys as written.
    pub claims: Vec<(ClaimKey, Matcher)>,
    /// The issuer's guarded `event_name` values, when this policy does not match
    /// `event_name` itself: a token with one of them is never admitted. `None`: no guard.
    pub guarded_events: Option<Arc<[String]>>,
    /// The grant.
    pub grant: Grant,
}

/// One check of one policy against one token, for explanations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked (`sub`, a claim key as written, `guarded_events`, `grant.subject`…).
    pub check: String,
    /// What the policy expects.
    pub expected: String,
    /// What the token holds (`None`: absent).
    pub actual: Option<String>,
    /// Whether it passed.
    pub passed: bool,
}

/// The issued subject and mapped claims, rendered for one token.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The issued `sub` before the issuer prefix.
    pub subject: String,
    /// Mapped claims.
    pub claims: Map<String, Value>,
}

type FieldError = (String, String);

impl TrustPolicy {
    /// Validates and compiles a document against its issuer.
    pub fn compile(
        doc: &TrustPolicyDoc,
        issuer: &Issuer,
        apps: &BTreeMap<String, Arc<GitHubApp>>,
        max_ttl: Duration,
        regexes: &mut RegexCache,
    ) -> Result<Self, FieldError> {
        let err = |field: &str, reason: String| Err((field.to_owned(), reason));
        if let Err(reason) = super::check_name(&doc.name) {
            return err("name", reason);
        }
        let subject = match &doc.subject {
            Some(m) => {
                Some(Matcher::compile_with(m, regexes).map_err(|r| ("subject".to_owned(), r))?)
            }
            None => None,
        };
        let mut claims = Vec::with_capacity(doc.claims.len());
        for (name, m) in &doc.claims {
            let key = ClaimKey::parse(name).map_err(|r| ("claims".to_owned(), r))?;
            let matcher = Matcher::compile_with(m, regexes)
                .map_err(|r| ("claims".to_owned(), format!("{name}: {r}")))?;
            claims.push((key, matcher));
        }
        if subject.is_none() && claims.is_empty() {
            return err(
                "subject",
                "a policy needs a `subject` or at least one claim matcher: it would admit \
                 every token of its issuer"
                    .into(),
            );
        }
        let grant = compile_grant(doc, apps, max_ttl)?;
        // Matching `event_name` at all, with any matcher, is the explicit choice that lifts
        // the guard: the policy's author has thought about which events it admits.
        let chooses_events = claims.iter().any(|(key, _)| key.is(EVENT_NAME));
        let guarded_events = (!chooses_events && !issuer.guarded_events.is_empty())
            .then(|| issuer.guarded_events.clone());
        let policy = Self {
            name: doc.name.clone(),
            issuer: doc.issuer.clone(),
            subject,
            claims,
            guarded_events,
            grant,
        };
        if issuer.shared && !policy.pins_owner() {
            return err(
                "subject",
                format!(
                    "issuer {:?} is shared (anyone can get a token from it): the policy must pin \
                     an owner, by matching one of {} exactly, or by a subject whose owner part \
                     has no wildcard or is `NAME@ID` with a literal id (`repo:*@2001/…`)",
                    issuer.name,
                    OWNER_ID_CLAIMS.join(", ")
                ),
            );
        }
        Ok(policy)
    }

    /// True when the policy admits only tokens of one owner (GCP's mandatory condition).
    pub fn pins_owner(&self) -> bool {
        self.pins_owner_id() || self.subject_pin() != SubjectPin::None
    }

    /// True when an owner-id claim is matched exactly.
    pub fn pins_owner_id(&self) -> bool {
        owner::pins_by_id_claim(self.claims.iter().map(|(k, m)| (k, m)))
    }

    /// How the subject matcher pins the owner (`None` without a subject matcher).
    pub fn subject_pin(&self) -> SubjectPin {
        self.subject
            .as_ref()
            .map_or(SubjectPin::None, owner::subject_pin)
    }

    /// Does this policy admit these claims? With `trace`, every check is recorded (and none
    /// is skipped); without, the first failure ends the evaluation.
    pub fn admits(&self, claims: &Map<String, Value>, mut trace: Option<&mut Vec<Check>>) -> bool {
        let mut admitted = true;
        let checks = self
            .subject
            .iter()
            .map(|m| ("sub", claims.get("sub"), m))
            .chain(
                self.claims
                    .iter()
                    .map(|(key, m)| (key.written(), key.resolve(claims), m)),
            );
        for (name, value, matcher) in checks {
            let passed = value.is_some_and(|v| matcher.matches(v));
            if let Some(t) = trace.as_deref_mut() {
                t.push(Check {
                    check: name.to_owned(),
                    expected: matcher.describe(),
                    actual: value.map(display_value),
                    passed,
                });
            } else if !passed {
                return false;
            }
            admitted &= passed;
        }
        if let Some(events) = &self.guarded_events {
            let value = claims.get(EVENT_NAME);
            let passed = !value.is_some_and(|v| is_guarded(v, events));
            if let Some(t) = trace {
                t.push(Check {
                    check: "guarded_events".into(),
                    expected: format!(
                        "event_name is not one of {events:?} (the issuer guards them; this \
                         policy does not match event_name)"
                    ),
                    actual: value.map(display_value),
                    passed,
                });
            }
            admitted &= passed;
        }
        admitted
    }

    /// Renders the grant's subject and mapped claims; `None` when a template names an absent
    /// claim (then the policy does not admit the token).
    pub fn render(
        &self,
        claims: &Map<String, Value>,
        mut trace: Option<&mut Vec<Check>>,
    ) -> Option<Rendered> {
        let mut record = |check: String, expected: String, passed: bool| {
            if let Some(t) = trace.as_deref_mut() {
                t.push(Check {
                    check,
                    expected,
                    actual: None,
                    passed,
                });
            }
        };
        let subject = match &self.grant.subject {
            Some(t) => t.render(claims),
            None => claims
                .get("sub")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        };
        if subject.is_none() {
            record(
                "grant.subject".into(),
                "claims named by the subject template are present".into(),
                false,
            );
        }
        let mut mapped = Map::new();
        for (name, template) in &self.grant.claims {
            match template.render_value(claims) {
                Some(v) => {
                    mapped.insert(name.clone(), v);
                }
                None => {
                    record(
                        format!("grant.claims.{name}"),
                        "claims named by the template are present".into(),
                        false,
                    );
                    return None;
                }
            }
        }
        Some(Rendered {
            subject: subject?,
            claims: mapped,
        })
    }
}

fn compile_grant(
    doc: &TrustPolicyDoc,
    apps: &BTreeMap<String, Arc<GitHubApp>>,
    max_ttl: Duration,
) -> Result<Grant, FieldError> {
    let g = &doc.grant;
    let err = |field: &str, reason: String| Err((format!("grant.{field}"), reason));
    if let Some(github) = &g.github {
        return compile_github_grant(doc, github, apps);
    }
    if g.audience.0.is_empty() || g.audience.0.iter().any(|a| a.trim().is_empty()) {
        return err(
            "audience",
            "an empty grant: at least one non-empty audience is required".into(),
        );
    }
    if let Some(bad) = g.scopes.iter().find(|s| !is_scope_token(s)) {
        return err(
            "scopes",
            format!("{bad:?} is not a scope (non-empty, no spaces or quotes)"),
        );
    }
    if let Some(ttl) = g.ttl {
        if ttl.0.is_zero() {
            return err("ttl", "must be positive".into());
        }
        if ttl.0 > max_ttl {
            return err(
                "ttl",
                format!(
                    "{} exceeds max_ttl ({})",
                    humantime::format_duration(ttl.0),
                    humantime::format_duration(max_ttl)
                ),
            );
        }
    }
    let subject = match &g.subject {
        Some(t) => Some(Template::parse(t).map_err(|r| ("grant.subject".to_owned(), r))?),
        None => None,
    };
    let mut claims = Vec::with_capacity(g.claims.len());
    for (name, text) in &g.claims {
        if RESERVED_CLAIMS.contains(&name.as_str()) {
            return err(
                "claims",
                format!("{name:?} is set by the broker and cannot be mapped"),
            );
        }
        claims.push((
            name.clone(),
            Template::parse(text).map_err(|r| ("grant.claims".to_owned(), r))?,
        ));
    }
    Ok(Grant {
        audience: g.audience.0.clone(),
        github: None,
        scopes: g.scopes.clone(),
        ttl: g.ttl.map(|d| d.0),
        subject,
        claims,
    })
}

/// A grant of a GitHub token: nothing of a broker token's grant applies to it, so nothing
/// of it may be written beside (an `audience` or `scopes` there would read as a limit that
/// nothing enforces).
fn compile_github_grant(
    doc: &TrustPolicyDoc,
    github: &super::document::GitHubGrantDoc,
    apps: &BTreeMap<String, Arc<GitHubApp>>,
) -> Result<Grant, FieldError> {
    let g = &doc.grant;
    let beside = [
        ("audience", !g.audience.0.is_empty()),
        ("scopes", !g.scopes.is_empty()),
        ("ttl", g.ttl.is_some()),
        ("subject", g.subject.is_some()),
        ("claims", !g.claims.is_empty()),
    ];
    if let Some((field, _)) = beside.iter().find(|(_, given)| *given) {
        let reason = match *field {
            "audience" => "a grant gives `audience` (a broker token) or `github` (a GitHub \
                           token), not both"
                .to_owned(),
            other => format!(
                "`{other}` shapes broker tokens; a `github` grant gives a GitHub token (use \
                 `github.permissions`)"
            ),
        };
        return Err((format!("grant.{field}"), reason));
    }
    Ok(Grant {
        audience: Vec::new(),
        github: Some(Box::new(GitHubGrant::compile(github, apps)?)),
        scopes: Vec::new(),
        ttl: None,
        subject: None,
        claims: Vec::new(),
    })
}

/// RFC 6749 §3.3 scope-token characters.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// A requested `scope` (RFC 6749 §3.3: space-separated scope tokens), repeats dropped,
/// order kept; `None` when a token holds a character the RFC does not allow. `/token`,
/// explain and `policy test` read a request's scope with this one function.
pub fn requested_scopes(text: &str) -> Option<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for s in text.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(s) {
            return None;
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    Some(scopes)
}

/// An `event_name` the issuer guards (any element, for an array).
fn is_guarded(value: &Value, events: &[String]) -> bool {
    let one = |v: &Value| scalar_text(v).is_some_and(|t| events.iter().any(|e| *e == t));
    match value {
        Value::Array(items) => items.iter().any(one),
        other => one(other),
    }
}

fn display_value(v: &Value) -> String {
    scalar_text(v).map_or_else(|| v.to_string(), |t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{IssuerDoc, Limits, PolicySet};
    use serde_json::json;

    #[test]
    fn a_grant_keeps_no_github_grant_inline() {
        // Most policies grant no GitHub token (see `Grant::github`).
        assert_eq!(
            std::mem::size_of::<Option<Box<GitHubGrant>>>(),
            std::mem::size_of::<usize>()
        );
        assert!(std::mem::size_of::<Grant>() <= 112);
    }

    /// One policy over one issuer; `Err` holds the field and reason.
    fn compile(issuer: Value, policy: Value) -> Result<Arc<TrustPolicy>, (String, String)> {
        let mut issuer_doc = json!({"name": "i", "audiences": ["sts"]});
        issuer_doc
            .as_object_mut()
            .unwrap()
            .extend(issuer.as_object().unwrap().clone());
        let issuer: IssuerDoc = serde_json::from_value(issuer_doc).unwrap();
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
        PolicySet::compile(&[issuer], &[doc], &limits)
            .map(|set| set.policy("p").unwrap().clone())
            .map_err(|mut e| {
                let e = e.remove(0);
                (e.field.unwrap_or_default(), e.reason)
            })
    }

    fn admits(policy: &TrustPolicy, claims: Value) -> (bool, Vec<Check>) {
        let claims = claims.as_object().unwrap().clone();
        let mut checks = Vec::new();
        let traced = policy.admits(&claims, Some(&mut checks));
        assert_eq!(
            traced,
            policy.admits(&claims, None),
            "traced and untraced agree"
        );
        (traced, checks)
    }

    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    #[test]
    fn nested_claims_by_pointer() {
        let p = compile(
            json!({"url": "https://kubernetes.default.svc.cluster.local"}),
            json!({"claims": {
                "/kubernetes.io/namespace": "payments",
                "/kubernetes.io/serviceaccount/name": {"glob": "deploy-*"},
                "/groups/0": "ops",
            }}),
        )
        .unwrap();
        let token = json!({
            "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "deploy-web"}},
            "groups": ["ops", "dev"],
        });
        let (ok, checks) = admits(&p, token.clone());
        assert!(ok);
        let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(
            names,
            [
                "/groups/0",
                "/kubernetes.io/namespace",
                "/kubernetes.io/serviceaccount/name"
            ],
            "explain shows the keys as written"
        );
        assert_eq!(checks[1].actual.as_deref(), Some("payments"));
        // A path that leads nowhere is an absent claim.
        let mut moved = token.clone();
        moved["groups"] = json!(["dev", "ops"]);
        assert!(!admits(&p, moved).0);
        let (ok, checks) = admits(&p, json!({"kubernetes.io": "payments", "groups": ["ops"]}));
        assert!(!ok);
        assert_eq!(checks[1].actual, None);
        // `kubernetes.io/namespace` without the leading `/` is one (absent) top-level name.
        let plain = compile(
            json!({"url": "https://k8s.example"}),
            json!({"claims": {"kubernetes.io/namespace": "payments"}}),
        )
        .unwrap();
        assert!(!admits(&plain, token).0);
        assert!(admits(&plain, json!({"kubernetes.io/namespace": "payments"})).0);
    }

    #[test]
    fn a_bad_pointer_is_refused_with_the_key_as_written() {
        let (field, reason) = compile(
            json!({"url": "https://k8s.example"}),
            json!({"claims": {"/kubernetes.io/a~2b": "x"}}),
        )
        .unwrap_err();
        assert_eq!(field, "claims");
        assert!(reason.contains("\"/kubernetes.io/a~2b\""), "{reason}");
    }

    #[test]
    fn a_pointer_to_an_owner_id_pins_the_owner() {
        let shared = json!({"url": GITHUB, "shared": true});
        let pinned = compile(
            shared.clone(),
            json!({"subject": {"glob": "**"}, "claims": {"/repository_owner_id": "2001"}}),
        );
        assert!(pinned.is_ok_and(|p| p.pins_owner_id()));
        let nested = compile(
            shared,
            json!({"subject": {"glob": "**"}, "claims": {"/repository_owner_id/0": "2001"}}),
        );
        assert_eq!(nested.unwrap_err().0, "subject");
    }

    #[test]
    fn guarded_events() {
        let push = json!({"sub": "repo:acme/api:ref:refs/heads/main", "event_name": "push"});
        let target = json!({"sub": "repo:acme/api:ref:refs/heads/main",
                            "event_name": "pull_request_target"});
        let subject = json!({"subject": "repo:acme/api:ref:refs/heads/main"});
        let p = compile(json!({"url": GITHUB}), subject.clone()).unwrap();
        assert!(admits(&p, push.clone()).0);
        let (ok, checks) = admits(&p, target.clone());
        assert!(
            !ok,
            "a policy that says nothing of event_name never admits a guarded event"
        );
        let guard = checks.last().unwrap();
        assert_eq!(guard.check, "guarded_events");
        assert_eq!(guard.actual.as_deref(), Some("pull_request_target"));
        assert!(!guard.passed && checks[0].passed, "{checks:?}");
        assert!(
            !admits(
                &p,
                json!({"sub": push["sub"], "event_name": "workflow_run"})
            )
            .0
        );
        assert!(
            !admits(
                &p,
                json!({"sub": push["sub"], "event_name": ["workflow_run"]})
            )
            .0
        );
        assert!(
            admits(&p, json!({"sub": push["sub"]})).0,
            "no event_name, no guard"
        );
        // Matching event_name, by name or by pointer and with any matcher, is the choice.
        for choice in [
            json!({"event_name": "pull_request_target"}),
            json!({"/event_name": {"one_of": ["push", "pull_request_target"]}}),
            json!({"event_name": {"glob": "*"}}),
        ] {
            let mut doc = subject.clone();
            doc["claims"] = choice.clone();
            let p = compile(json!({"url": GITHUB}), doc).unwrap();
            assert!(p.guarded_events.is_none(), "{choice}");
            let (ok, checks) = admits(&p, target.clone());
            assert!(ok, "{choice}");
            assert!(checks.iter().all(|c| c.check != "guarded_events"));
        }
        // Another issuer guards nothing unless told; told, it guards what it lists.
        let other = compile(json!({"url": "https://gitlab.example"}), subject.clone()).unwrap();
        assert!(other.guarded_events.is_none() && admits(&other, target.clone()).0);
        let ghes = json!({"url": "https://ghes.example/_services/token",
                          "guarded_events": ["pull_request_target"]});
        assert!(!admits(&compile(ghes, subject.clone()).unwrap(), target.clone()).0);
        let off = json!({"url": GITHUB, "guarded_events": []});
        assert!(admits(&compile(off, subject).unwrap(), target).0);
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("deploy:write"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token(""));
        assert!(!is_scope_token("a\"b"));
    }
}
