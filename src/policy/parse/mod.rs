//! Reading documents strictly, YAML policy files and admin-API JSON alike: nesting is bounded
//! before any parser runs, a key given twice is refused at any depth, and every error names
//! the field path it is about (`grant.audience: missing field`).
//!
//! Other code calls [`json_body`] for a JSON request body and [`from_json`] to read a
//! document type from it; `load` uses the YAML functions.

mod unique;
mod yaml_nesting;

use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed};
use serde_json::Value;

use unique::Walker;

/// Deepest nesting a document may have (the top mapping is level 1). Policies need 4.
pub const MAX_DEPTH: usize = 64;

/// Why a document was refused: the field path when there is one, and the line (1-based,
/// within the text given) when the format has lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// `grant.audience`, `claims.repository_owner_id`, `documents[1].grant`.
    pub path: Option<String>,
    /// Why, without the path.
    pub reason: String,
    /// Line within the text given.
    pub line: Option<usize>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

fn too_deep() -> String {
    format!("nesting deeper than {MAX_DEPTH} levels")
}

/// Values a walk may visit: alias-free text has fewer than two per byte (`[:,:]`), so only
/// aliases can go past this, and then work stays linear in the text.
fn budget(len: usize) -> usize {
    2 * len + 1024
}

/// A JSON request body as a value: nesting bounded before parsing, no key given twice in any
/// object (the error names the key's path).
pub fn json_body(bytes: &[u8]) -> Result<Value, ParseError> {
    if let Some(line) = json_too_deep(bytes) {
        return Err(ParseError {
            path: None,
            reason: too_deep(),
            line: Some(line),
        });
    }
    let mut walker = Walker::new(true, budget(bytes.len()), MAX_DEPTH);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = walker
        .root()
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    value.map_err(|e| match walker.problem.take() {
        Some((path, reason)) => ParseError {
            path,
            reason,
            line: Some(e.line()),
        },
        None => ParseError {
            path: None,
            reason: e.to_string(),
            line: Some(e.line()),
        },
    })
}

/// A document type read from a JSON value; an error names its field path.
pub fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        field_error(e.path(), &message, None)
    })
}

/// The first line at which a JSON text opens its 65th level, if it does. Exact for valid
/// JSON; anything else fails in the parser, which is linear.
fn json_too_deep(bytes: &[u8]) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    None
}

/// What the strict walk of one YAML document found.
#[derive(Debug, Default)]
pub(crate) struct YamlShape {
    /// Top-level `kind` (`""` when it is not a string).
    pub kind: Option<String>,
    /// Top-level `name`.
    pub name: Option<String>,
    /// The refusal, if any.
    pub error: Option<ParseError>,
    /// Whether the document can still be read into its type (to report more of its errors):
    /// true only for a duplicate key.
    pub readable: bool,
}

/// Checks one YAML document (no `---` inside): nesting first, without parsing; then one walk
/// for duplicate keys, nesting through aliases and alias expansion.
pub(crate) fn yaml_shape(text: &str) -> YamlShape {
    if let Err(deep) = yaml_nesting::check(text, MAX_DEPTH) {
        return YamlShape {
            error: Some(ParseError {
                path: None,
                reason: too_deep(),
                line: Some(deep.line),
            }),
            ..YamlShape::default()
        };
    }
    let mut walker = Walker::new(false, budget(text.len()), MAX_DEPTH);
    let result = walker
        .root()
        .deserialize(serde_yaml_ng::Deserializer::from_str(text));
    let error = result.err().map(|e| {
        let line = e.location().map(|l| l.line());
        match walker.problem.take() {
            Some((path, reason)) => ParseError { path, reason, line },
            None => ParseError {
                path: None,
                reason: strip_location(&e.to_string()).to_owned(),
                line,
            },
        }
    });
    let readable = error.as_ref().is_none_or(|e| e.reason == "duplicate key");
    YamlShape {
        kind: walker.kind,
        name: walker.name,
        error,
        readable,
    }
}

/// A document type read from one YAML document; an error names its field path and line
/// (a missing field: the line where the object that lacks it starts).
pub(crate) fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
        let line = e.inner().location().map(|l| l.line());
        let message = e.inner().to_string();
        field_error(e.path(), strip_location(&message), line)
    })
}

/// serde_yaml appends "at line X column Y" (and libyaml's context after it); the caller
/// prints its own file:line instead.
pub(crate) fn strip_location(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

/// `path: reason` from serde's error: serde_yaml's own path prefix is dropped, and a missing,
/// unknown or repeated field is named in the path rather than in the sentence.
fn field_error(path: &serde_path_to_error::Path, message: &str, line: Option<usize>) -> ParseError {
    let mut prefixes = Vec::new();
    let mut so_far = String::new();
    for segment in path {
        if !matches!(segment, serde_path_to_error::Segment::Seq { .. }) && !so_far.is_empty() {
            so_far.push('.');
        }
        so_far.push_str(&segment.to_string());
        prefixes.push(so_far.clone());
    }
    let mut message = message;
    if let Some(p) = prefixes.iter().rev().find(|p| {
        message
            .strip_prefix(p.as_str())
            .is_some_and(|r| r.starts_with(": "))
    }) {
        message = &message[p.len() + 2..];
    }
    let mut path = (!so_far.is_empty()).then_some(so_far);
    let join = |path: &Option<String>, field: &str| match path {
        Some(p) => format!("{p}.{field}"),
        None => field.to_owned(),
    };
    let named = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
        let end = rest.find('`')?;
        Some((&rest[..end], &rest[end + 1..]))
    };
    let reason = if let Some((field, "")) = named("missing field ") {
        path = Some(join(&path, field));
        "missing field".to_owned()
    } else if let Some((field, rest)) = named("unknown field ") {
        if path.as_deref().is_none_or(|p| !p.ends_with(field)) {
            path = Some(join(&path, field));
        }
        format!("unknown field{rest}")
    } else if let Some((field, "")) = named("duplicate field ") {
        path = Some(join(&path, field));
        "duplicate key".to_owned()
    } else {
        message.to_owned()
    };
    ParseError { path, reason, line }
}

#[cfg(test)]
mod tests;
