//! One walk over a parsed document (YAML or JSON, through serde) before it is read into its
//! type: a key given twice in any mapping, nesting past the bound and aliases that expand past
//! a budget are refused here, with the path of the offence.
//!
//! A key given twice is refused rather than resolved: serde's maps keep the last one, so a
//! second `repository_owner_id: {glob: "**"}` silently replaced the pin before it. Inbound
//! tokens are refused for the same reason.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::de::{IgnoredAny, VariantAccess};
use serde_json::{Map, Value};

/// One step of a path: `claims`, `[0]`.
#[derive(Debug, Clone)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// `claims.repository_owner_id`, `documents[1].grant` (as serde_path_to_error writes them),
/// or `None` at the top.
pub(super) fn format_path(segments: &[Segment]) -> Option<String> {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What the walk found, and what it keeps between nodes.
pub(super) struct Walker {
    build: bool,
    budget: usize,
    max_depth: usize,
    path: Vec<Segment>,
    /// The offence, when the walk stopped for one of its own reasons: path and reason.
    pub problem: Option<(Option<String>, String)>,
    /// The top mapping's `kind`, when it was read (a value that is not a string reads as "").
    pub kind: Option<String>,
    /// The top mapping's `name`, when it was read as a string.
    pub name: Option<String>,
}

impl Walker {
    /// `build`: return the document as a JSON value (else `Null`, and nothing is kept).
    /// `budget`: how many values the walk may visit, aliases expanded.
    pub fn new(build: bool, budget: usize, max_depth: usize) -> Self {
        Self {
            build,
            budget,
            max_depth,
            path: Vec::new(),
            problem: None,
            kind: None,
            name: None,
        }
    }

    /// The walk of a whole document.
    pub fn root(&mut self) -> Walk<'_> {
        Walk {
            w: self,
            depth: 0,
            capture: Capture::None,
        }
    }

    fn refuse<E: de::Error>(&mut self, extra: Option<&str>, reason: String) -> E {
        let mut path = self.path.clone();
        path.extend(extra.map(|k| Segment::Key(k.to_owned())));
        let error = E::custom(&reason);
        self.problem = Some((format_path(&path), reason));
        error
    }

    fn spend<E: de::Error>(&mut self) -> Result<(), E> {
        if self.budget == 0 {
            return Err(self.refuse(
                None,
                "aliases expand to too many values (at most twice the document's size)".into(),
            ));
        }
        self.budget -= 1;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Capture {
    None,
    Kind,
    Name,
}

/// The walk of one value.
pub(super) struct Walk<'w> {
    w: &'w mut Walker,
    /// Collections around this value.
    depth: usize,
    capture: Capture,
}

impl Walk<'_> {
    fn leaf<E: de::Error>(self, value: impl FnOnce() -> Value) -> Result<Value, E> {
        self.w.spend()?;
        if self.capture == Capture::Kind {
            self.w.kind.get_or_insert_with(String::new);
        }
        Ok(if self.w.build { value() } else { Value::Null })
    }

    fn child(&mut self, capture: Capture) -> Walk<'_> {
        Walk {
            w: &mut *self.w,
            depth: self.depth + 1,
            capture,
        }
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.w.spend()?;
        if self.capture == Capture::Kind {
            self.w.kind.get_or_insert_with(String::new);
        }
        if self.depth + 1 > self.w.max_depth {
            let reason = super::too_deep();
            return Err(self.w.refuse(None, reason));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.leaf(|| Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.leaf(|| Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.leaf(|| Value::from(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        self.leaf(|| Value::String(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        self.leaf(|| Value::String(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.leaf(|| Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match self.capture {
            Capture::Kind => self.w.kind = Some(v.to_owned()),
            Capture::Name => self.w.name = Some(v.to_owned()),
            Capture::None => {}
        }
        let build = self.w.build;
        let value = self.leaf(|| Value::Null)?;
        Ok(if build {
            Value::String(v.to_owned())
        } else {
            value
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.leaf(|| Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.leaf(|| Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        for index in 0.. {
            self.w.path.push(Segment::Index(index));
            let Some(item) = seq.next_element_seed(self.child(Capture::None))? else {
                self.w.path.pop();
                break;
            };
            self.w.path.pop();
            if self.w.build {
                items.push(item);
            }
        }
        Ok(if self.w.build {
            Value::Array(items)
        } else {
            Value::Null
        })
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut seen = HashSet::new();
        let mut object = Map::new();
        loop {
            let seed = KeySeed {
                w: &mut *self.w,
                seen: &seen,
            };
            let Some(key) = map.next_key_seed(seed)? else {
                break;
            };
            let capture = match key.as_str() {
                "kind" if self.depth == 0 => Capture::Kind,
                "name" if self.depth == 0 => Capture::Name,
                _ => Capture::None,
            };
            self.w.path.push(Segment::Key(key.clone()));
            let value = map.next_value_seed(self.child(capture))?;
            self.w.path.pop();
            if self.w.build {
                object.insert(key.clone(), value);
            }
            seen.insert(key);
        }
        Ok(if self.w.build {
            Value::Object(object)
        } else {
            Value::Null
        })
    }

    /// A YAML tag (`!name value`): the value as if untagged.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        variant.newtype_variant_seed(self)
    }
}

/// A mapping key, refused when the mapping already has it. Checked here, while the parser
/// is at the key, so that a YAML error points at the duplicate's own line.
struct KeySeed<'a> {
    w: &'a mut Walker,
    seen: &'a HashSet<String>,
}

impl KeySeed<'_> {
    fn key<E: de::Error>(self, key: String) -> Result<String, E> {
        if self.seen.contains(&key) {
            return Err(self.w.refuse(Some(&key), "duplicate key".into()));
        }
        Ok(key)
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.key(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.key(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.key(v.to_string())
    }
}
