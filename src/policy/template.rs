//! Templates over inbound claims: `"{repository}:{environment}"`.
//!
//! Parsed once at load time. A template that names an absent claim renders to nothing, and
//! the policy then does not admit the token: an issued token never carries a half-filled value.

use serde_json::Value;

use super::matcher::scalar_text;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(Box<str>),
    Claim(Box<str>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Boxed, not a `Vec`: a large policy set holds tens of thousands of templates, and the
    /// slack capacity of growing vectors and strings was a quarter of its memory.
    parts: Box<[Part]>,
}

impl Template {
    /// Parses `text`; `{name}` names a claim, `{{` and `}}` are literal braces.
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
                    if !is_claim_name(&name) {
                        return Err(format!("template {text:?}: `{{{name}` is not a claim name"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                    }
                    parts.push(Part::Claim(name.into()));
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
                Part::Claim(name) => out.push_str(&scalar_text(claims.get(&**name)?)?),
            }
        }
        Some(out)
    }

    /// Renders to a JSON value: a template that is exactly one `{claim}` copies the claim's
    /// value as it is (an array stays an array); anything else renders to a string.
    pub fn render_value(&self, claims: &serde_json::Map<String, Value>) -> Option<Value> {
        match &*self.parts {
            [Part::Claim(name)] => claims.get(&**name).filter(|v| !v.is_null()).cloned(),
            _ => self.render(claims).map(Value::String),
        }
    }

    /// The claims this template reads.
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(n) => Some(&**n),
            Part::Literal(_) => None,
        })
    }
}

fn is_claim_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
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
    fn braces_and_errors() {
        let t = Template::parse("{{literal}}").unwrap();
        assert_eq!(t.render(&claims(json!({}))).as_deref(), Some("{literal}"));
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("{a b}").is_err());
        assert!(Template::parse("x}").is_err());
        assert!(Template::parse("{unclosed").is_err());
    }
}
