//! A trust policy, compiled: the matchers that admit a token and the grant it gets.

use std::time::Duration;

use serde_json::{Map, Value};

use super::document::TrustPolicyDoc;
use super::issuer::Issuer;
use super::matcher::{Matcher, RegexCache, scalar_text};
use super::template::Template;

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
    /// Possible `aud` values of the issued token.
    pub audience: Vec<String>,
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
    /// Matchers for other claims, in name order.
    pub claims: Vec<(String, Matcher)>,
    /// The grant.
    pub grant: Grant,
}

/// One check of one policy against one token, for explanations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked (`sub`, a claim name, `grant.subject`…).
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
            let matcher = Matcher::compile_with(m, regexes)
                .map_err(|r| ("claims".to_owned(), format!("{name}: {r}")))?;
            claims.push((name.clone(), matcher));
        }
        if subject.is_none() && claims.is_empty() {
            return err(
                "subject",
                "a policy needs a `subject` or at least one claim matcher: it would admit \
                 every token of its issuer"
                    .into(),
            );
        }
        let grant = compile_grant(doc, max_ttl)?;
        let policy = Self {
            name: doc.name.clone(),
            issuer: doc.issuer.clone(),
            subject,
            claims,
            grant,
        };
        if issuer.shared && !policy.pins_owner() {
            return err(
                "subject",
                format!(
                    "issuer {:?} is shared (anyone can get a token from it): the policy must pin \
                     an owner, by matching one of {} exactly or by a subject whose owner part \
                     has no wildcard",
                    issuer.name,
                    OWNER_ID_CLAIMS.join(", ")
                ),
            );
        }
        Ok(policy)
    }

    /// True when the policy admits only tokens of one owner (GCP's mandatory condition).
    pub fn pins_owner(&self) -> bool {
        let by_id = self
            .claims
            .iter()
            .any(|(name, m)| OWNER_ID_CLAIMS.contains(&name.as_str()) && m.is_exact());
        let by_subject = self.subject.as_ref().is_some_and(|m| {
            matches!(m, Matcher::Exact(_)) || owner_part_is_literal(&m.literal_prefix())
        });
        by_id || by_subject
    }

    /// Does this policy admit these claims? With `trace`, every check is recorded (and none
    /// is skipped); without, the first failure ends the evaluation.
    pub fn admits(&self, claims: &Map<String, Value>, mut trace: Option<&mut Vec<Check>>) -> bool {
        let mut admitted = true;
        let checks = self
            .subject
            .iter()
            .map(|m| ("sub", m))
            .chain(self.claims.iter().map(|(n, m)| (n.as_str(), m)));
        for (name, matcher) in checks {
            let value = claims.get(name);
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

fn compile_grant(doc: &TrustPolicyDoc, max_ttl: Duration) -> Result<Grant, FieldError> {
    let g = &doc.grant;
    let err = |field: &str, reason: String| Err((format!("grant.{field}"), reason));
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
        scopes: g.scopes.clone(),
        ttl: g.ttl.map(|d| d.0),
        subject,
        claims,
    })
}

/// RFC 6749 §3.3 scope-token characters.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// `kind:owner/…` or `kind:owner:…` with no wildcard up to and including the owner's end.
fn owner_part_is_literal(prefix: &str) -> bool {
    let Some((kind, rest)) = prefix.split_once(':') else {
        return false;
    };
    let owner_len = rest.find(['/', ':']);
    !kind.is_empty() && owner_len.is_some_and(|n| n > 0)
}

fn display_value(v: &Value) -> String {
    scalar_text(v).map_or_else(|| v.to_string(), |t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let pins = |re: &str| {
            let m =
                Matcher::compile(&super::super::document::MatcherDoc::Regex(re.into())).unwrap();
            owner_part_is_literal(&m.literal_prefix())
        };
        for bypass in ["repo:acme/+*.*", "repo:acme/+{0}.*", "repo:acme/{0,}.*"] {
            assert!(!pins(bypass), "{bypass} must not pin the owner");
        }
        assert!(pins("repo:acme/.*"));
        assert!(pins("repo:acme/(api|web):.*"));
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("deploy:write"));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token(""));
        assert!(!is_scope_token("a\"b"));
    }
}
