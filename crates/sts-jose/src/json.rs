//! JSON objects whose members are unique at every depth.
//!
//! RFC 7515 §5.2 and RFC 7519 §4 say a JOSE header or claims set with a duplicate member
//! must be rejected (or is at best parser-dependent). Parsers that keep different duplicates
//! disagree on what was verified: a policy matching `/kubernetes.io/namespace` and a
//! consumer reading the token later must see the same value, so nested objects count too.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why bytes are not a JSON object with unique members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// A member name appears twice in one object.
    #[error("duplicate JSON member")]
    Duplicate,
    /// Not JSON, or not an object.
    #[error("not a JSON object")]
    Invalid,
}

/// Parses `bytes` as one JSON object (surrounding whitespace allowed).
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = UniqueValue.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| JsonError::Invalid)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::Invalid),
    }
}

const DUPLICATE: &str = "duplicate member";

fn classify(e: serde_json::Error) -> JsonError {
    if e.is_data() && e.to_string().starts_with(DUPLICATE) {
        JsonError::Duplicate
    } else {
        JsonError::Invalid
    }
}

/// A `Value` whose objects, at any depth, have unique member names.
struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(UniqueValue)?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        let ok = object(br#" {"a": {"b": [1, {"c": 2}]}, "d": null} "#).unwrap();
        assert_eq!(ok["a"]["b"][1]["c"], 2);
        for dup in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"b": 1, "b": 1}}"#,
            r#"{"a": [{"b": 1, "b": 2}]}"#,
            // The same name written with an escape is the same name.
            r#"{"a": 1, "\u0061": 2}"#,
        ] {
            assert_eq!(object(dup.as_bytes()), Err(JsonError::Duplicate), "{dup}");
        }
        for invalid in ["[]", "1", "\"x\"", "{} x", "{", "", "{\"a\":1,}"] {
            assert_eq!(
                object(invalid.as_bytes()),
                Err(JsonError::Invalid),
                "{invalid}"
            );
        }
        // A value that merely spells the marker is not a duplicate.
        assert!(object(br#"{"duplicate member": "duplicate member"}"#).is_ok());
    }

    #[test]
    fn numbers_keep_their_kind() {
        let map = object(br#"{"i": -5, "u": 18446744073709551615, "f": 1.5}"#).unwrap();
        assert_eq!(map["i"].as_i64(), Some(-5));
        assert_eq!(map["u"].as_u64(), Some(u64::MAX));
        assert_eq!(map["f"].as_f64(), Some(1.5));
    }
}
