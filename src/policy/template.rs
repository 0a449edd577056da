//! Templates over inbound claims: `"{repository}:{environment}"`, and nested claims by JSON
//! Pointer: `"{/kubernetes.io/pod/name}"` (see [`super::claim_path`]).
//!
//! Parsed once at load time. A template that names an absent claim renders to nothing, and
//! the policy then does not admit the token: an issued token never carries a half-filled value.

use serde_json::Value;

use super::claim_path::ClaimKey;
use super::matcher::scalar_text;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(Box<str>),
    Claim(ClaimKey),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Boxed, not a `Vec`: a large policy set holds tens of thousands of templates, and the
    /// slack capacity of growing vectors and strings was a quarter of its memory.
    parts: Box<[Part]>,
}

impl Template {
    /// Parses `text`; `{name}` names a claim, `{/a/b}` a nested one, `{{` and `}}` are literal
    /// braces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!("template {text:?}: `{{` is never closed"));
                    }
                    let key = claim_key(&name).ok_or_else(|| {
                        format!("template {text:?}: `{{{name}}}` is not a claim name or path")
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                    }
                    parts.push(Part::Claim(key));
                }
                '}' => return Err(format!("template {text:?}: unmatched `}}`")),
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Ok(Self {
            parts: parts.into(),
        })
    }

    /// Renders to text; `None` when a named claim is absent or not a scalar.
    pub fn render(&self, claims: &serde_json::Map<String, Value>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Claim(key) => out.push_str(&scalar_text(key.resolve(claims)?)?),
            }
        }
        Some(out)
    }

    /// Renders to a JSON value: a template that is exactly one `{claim}` copies the claim's
    /// value as it is (an array stays an array); anything else renders to a string.
    pub fn render_value(&self, claims: &serde_json::Map<String, Value>) -> Option<Value> {
        match &*self.parts {
            [Part::Claim(key)] => key.resolve(claims).filter(|v| !v.is_null()).cloned(),
            _ => self.render(claims).map(Value::String),
        }
    }

    /// The claims this template reads, as written (`repository`, `/kubernetes.io/pod/name`).
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.claim_keys().map(ClaimKey::written)
    }

    /// The claims this template reads.
    pub fn claim_keys(&self) -> impl Iterator<Item = &ClaimKey> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(key) => Some(key),
            Part::Literal(_) => None,
        })
    }
}

/// A name of plain characters, or a JSON Pointer of printable characters without spaces:
/// what sits between braces is read by people in a YAML string, so it stays plain.
fn claim_key(text: &str) -> Option<ClaimKey> {
    // As in `claims`, a key that does not start with `/` is one name, `/` and all
    // (`oidc.circleci.com/project-id`).
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/');
    let ok = if text.starts_with('/') {
        text.len() <= 256
            && text
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '{')
    } else {
        !text.is_empty() && text.len() <= 128 && text.chars().all(plain)
    };
    if !ok {
        return None;
    }
    ClaimKey::parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_claims_and_literals() {
        let t = Template::parse("{repository}:{environment}").unwrap();
        let c = claims(json!({"repository": "acme/api", "environment": "prod"}));
        assert_eq!(t.render(&c).as_deref(), Some("acme/api:prod"));
        assert_eq!(
            t.claim_names().collect::<Vec<_>>(),
            ["repository", "environment"]
        );
    }

    #[test]
    fn absent_claim_renders_nothing() {
        let t = Template::parse("{repository}:{environment}").unwrap();
        assert_eq!(t.render(&claims(json!({"repository": "a"}))), None);
    }

    #[test]
    fn single_claim_copies_json_value() {
        let t = Template::parse("{groups}").unwrap();
        let c = claims(json!({"groups": ["a", "b"], "n": 5}));
        assert_eq!(t.render_value(&c), Some(json!(["a", "b"])));
        let n = Template::parse("id-{n}").unwrap();
        assert_eq!(n.render_value(&c), Some(json!("id-5")));
        assert_eq!(Template::parse("{groups}x").unwrap().render_value(&c), None);
    }

    #[test]
    fn pointers_read_nested_claims() {
        let c = claims(json!({
            "kubernetes.io": {"namespace": "payments", "pod": {"name": "web-1"}},
            "groups": ["dev", "ops"],
        }));
        let t = Template::parse("{/kubernetes.io/namespace}/{/kubernetes.io/pod/name}").unwrap();
        assert_eq!(t.render(&c).as_deref(), Some("payments/web-1"));
        assert_eq!(
            t.claim_names().collect::<Vec<_>>(),
            ["/kubernetes.io/namespace", "/kubernetes.io/pod/name"]
        );
        let first = Template::parse("{/groups/0}").unwrap();
        assert_eq!(first.render_value(&c), Some(json!("dev")));
        let pod = Template::parse("{/kubernetes.io/pod}").unwrap();
        assert_eq!(pod.render_value(&c), Some(json!({"name": "web-1"})));
        // A path that leads nowhere is an absent claim; an object has no text.
        assert_eq!(Template::parse("{/groups/2}").unwrap().render(&c), None);
        assert_eq!(pod.render(&c), None);
        // `kubernetes.io` is a name, not a path.
        let whole = Template::parse("{kubernetes.io}").unwrap();
        assert_eq!(whole.render_value(&c), Some(c["kubernetes.io"].clone()));
        assert!(Template::parse("{/a~2}").is_err());
        assert!(Template::parse("{/a b}").is_err());
        // Not starting with `/`: one name, as in `claims`.
        let c = claims(json!({"a/b": "slash", "a": {"b": "nested"}}));
        assert_eq!(
            Template::parse("{a/b}").unwrap().render(&c).as_deref(),
            Some("slash")
        );
        assert_eq!(
            Template::parse("{/a/b}").unwrap().render(&c).as_deref(),
            Some("nested")
        );
        assert_eq!(
            Template::parse("{/a~1b}").unwrap().render(&c).as_deref(),
            Some("slash")
        );
    }

    #[test]
    fn braces_and_errors() {
        let t = Template::parse("{{literal}}").unwrap();
        assert_eq!(t.render(&claims(json!({}))).as_deref(), Some("{literal}"));
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("{a b}").is_err());
        assert!(Template::parse("x}").is_err());
        assert!(Template::parse("{unclosed").is_err());
    }
}
