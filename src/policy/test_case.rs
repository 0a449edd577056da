//! `kind: PolicyTest`: a test case for the policies, as admins write it. Parsed as strictly
//! as the policy documents (unknown fields refused, errors with file, line and field path);
//! what a case means and how it runs is `crate::proof`'s business.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::load::{LoadError, Origin};
use super::parse;

pub use super::document::TEST_KIND;

/// `kind: PolicyTest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestDoc {
    /// Always `PolicyTest` (how the document was told apart from the others).
    #[serde(default)]
    pub kind: Option<String>,
    /// Unique among the tests; free text.
    pub name: String,
    /// Free text for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// The name of the Issuer whose token the claims are.
    pub issuer: String,
    /// The time of the decision: RFC 3339, or Unix seconds.
    #[serde(default)]
    pub now: Option<Value>,
    /// The subject token's claims, taken as validated.
    pub claims: Map<String, Value>,
    /// What the client asks for.
    #[serde(default)]
    pub request: RequestDoc,
    /// What the broker must answer.
    pub expect: ExpectDoc,
}

/// The parameters of `/token` besides the subject token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDoc {
    /// `audience`.
    #[serde(default)]
    pub audience: Option<String>,
    /// `scope`, space-separated as on the wire.
    #[serde(default)]
    pub scope: Option<String>,
    /// `policy`: evaluate only this one.
    #[serde(default)]
    pub policy: Option<String>,
}

/// The expected answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDoc {
    /// Issued or not.
    pub decision: Decision,
    /// The policy the decision is filed under: the one that admits the token (or, for a
    /// denial, the one that admitted it but could not grant the request).
    #[serde(default)]
    pub policy: Option<String>,
    /// The audit reason code (`issued`, `not_admitted`, `audience_not_granted`, …).
    #[serde(default)]
    pub reason: Option<String>,
    /// Claims the issued token must have, compared as JSON values.
    #[serde(default)]
    pub token: Option<Map<String, Value>>,
    /// For a GitHub grant: what GitHub would be asked for (each field given is compared).
    #[serde(default)]
    pub github: Option<ExpectGitHubDoc>,
}

/// The GitHub token a case expects to be asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectGitHubDoc {
    /// The installation's account.
    #[serde(default)]
    pub owner: Option<String>,
    /// The repositories asked for (`[]`: none named, the installation's own set).
    #[serde(default)]
    pub repositories: Option<Vec<String>>,
    /// Permission name to level.
    #[serde(default)]
    pub permissions: Option<std::collections::BTreeMap<String, String>>,
}

/// The two answers an exchange can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A token is issued.
    Allow,
    /// None is.
    Deny,
}

impl Decision {
    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// Longest test name: it is printed on one line per case.
const MAX_NAME_BYTES: usize = 200;

/// Reads one PolicyTest document: its shape (nesting, duplicate keys), then its type, then
/// what a type cannot say (a usable name, no token expected of a denial).
pub fn read(origin: &Origin) -> Result<PolicyTestDoc, LoadError> {
    let shape = parse::yaml_shape(origin.text());
    if let Some(e) = shape.error {
        return Err(origin.locate(e));
    }
    let doc: PolicyTestDoc = parse::from_yaml(origin.text()).map_err(|e| origin.locate(e))?;
    check_name(&doc.name).map_err(|reason| origin.error_at("name", reason))?;
    if doc.expect.decision == Decision::Deny && doc.expect.token.is_some() {
        return Err(origin.error_at("expect.token", "a denied exchange gets no token"));
    }
    if doc
        .expect
        .token
        .as_ref()
        .is_some_and(|t| t.contains_key("jti"))
    {
        // Expecting one would make a case that can never pass.
        return Err(origin.error_at("expect.token.jti", "every issued token gets a new jti"));
    }
    Ok(doc)
}

/// The name of a test as far as it can be told without reading it as one (to report a
/// broken document under its name).
pub fn name_of(origin: &Origin) -> Option<String> {
    parse::yaml_shape(origin.text())
        .name
        .filter(|n| check_name(n).is_ok())
}

/// A name is printed at the start of a line of output: one line, of visible text.
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("longer than {MAX_NAME_BYTES} bytes"));
    }
    // Line and paragraph separators are not control characters, but break lines too.
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err("must be one line without control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::load::Bundle;

    /// The test documents of `text`, read.
    fn read_all(text: &str) -> Vec<Result<PolicyTestDoc, String>> {
        let loaded = Bundle::read_text(Path::new("t.yaml"), text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded
            .tests
            .iter()
            .map(|o| read(o).map_err(|e| e.to_string()))
            .collect()
    }

    const CASE: &str = "kind: PolicyTest\nname: main deploys\nissuer: gh\nnow: 2026-12-01T12:00:00Z\nclaims:\n  sub: repo:acme/api:ref:refs/heads/main\n  repository_id: \"42\"\nrequest: {audience: api, scope: \"deploy:write\"}\nexpect:\n  decision: allow\n  token: {sub: \"gh:x\", aud: [api]}\n";

    #[test]
    fn reads_a_case() {
        let docs = read_all(CASE);
        let doc = docs[0].as_ref().unwrap();
        assert_eq!(doc.name, "main deploys");
        assert_eq!(doc.now, Some(Value::String("2026-12-01T12:00:00Z".into())));
        assert_eq!(doc.claims["repository_id"], Value::String("42".into()));
        assert_eq!(doc.request.scope.as_deref(), Some("deploy:write"));
        assert_eq!(doc.expect.decision, Decision::Allow);
    }

    #[test]
    fn refuses_what_it_does_not_know_with_file_line_and_path() {
        let cases = [
            (
                CASE.replace("decision: allow", "decision: permit"),
                "t.yaml:10: expect.decision: unknown variant",
            ),
            (
                CASE.replace("request: {audience", "request: {audiense"),
                "t.yaml:8: request.audiense: unknown field",
            ),
            (
                CASE.replace("expect:\n", "expected: {decision: deny}\nexpect:\n"),
                "t.yaml:9: expected: unknown field",
            ),
            (
                CASE.replace("issuer: gh\n", ""),
                "t.yaml:1: issuer: missing field",
            ),
            (
                CASE.replace("name: main deploys", "name: \"\""),
                "t.yaml:2: name: must not be empty",
            ),
            (
                CASE.replace("decision: allow", "decision: deny"),
                "t.yaml:11: expect.token: a denied exchange gets no token",
            ),
            (
                CASE.replace("aud: [api]", "aud: [api], jti: j"),
                "t.yaml:11: expect.token.jti: every issued token gets a new jti",
            ),
            (
                CASE.replace(
                    "  repository_id: \"42\"\n",
                    "  repository_id: \"42\"\n  repository_id: \"43\"\n",
                ),
                "t.yaml:8: claims.repository_id: duplicate key",
            ),
        ];
        for (text, want) in cases {
            let docs = read_all(&text);
            let got = docs[0].as_ref().unwrap_err();
            assert!(got.starts_with(want), "want {want}, got {got}");
        }
    }

    #[test]
    fn the_broker_never_reads_a_test_as_a_policy() {
        let policy = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\n";
        let broken = CASE.replace("decision: allow", "decision: permit");
        let loaded = Bundle::read_text(Path::new("p.yaml"), &format!("{policy}---\n{broken}"));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.bundle.issuers.len(), 1);
        assert_eq!(loaded.tests.len(), 1);
        assert_eq!(name_of(&loaded.tests[0]).as_deref(), Some("main deploys"));
    }
}
