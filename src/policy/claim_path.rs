//! Claim keys as policies write them: a top-level claim name (`repository_id`,
//! `kubernetes.io`), or, when the key starts with `/`, a JSON Pointer (RFC 6901) into the
//! token's claims (`/kubernetes.io/serviceaccount/name`, `/groups/0`).
//!
//! A key is kept as written (errors and explanations show it so) and as its reference tokens,
//! which are what identify a claim: `/repository_owner_id` and `repository_owner_id` are one
//! claim, for matching, for owner pins and for the index of policies alike.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

/// Longest key accepted: a key is hand-written, and long ones only cost time per token.
const MAX_KEY_LEN: usize = 512;

/// A claim key, parsed.
#[derive(Debug, Clone)]
pub struct ClaimKey(Repr);

/// A large policy set holds a key per matched claim and per template reference (tens of
/// thousands), nearly all plain names: those are one string, as a name was before pointers.
#[derive(Debug, Clone)]
enum Repr {
    /// A top-level name written as such; it is its own one reference token.
    Name(Box<str>),
    /// A JSON Pointer.
    Pointer(Box<Pointer>),
}

#[derive(Debug, Clone)]
struct Pointer {
    /// As written in the policy.
    written: Box<str>,
    /// The reference tokens, unescaped.
    tokens: Box<[Box<str>]>,
}

impl ClaimKey {
    /// Parses a written key: a JSON Pointer when it starts with `/`, else one top-level name.
    pub fn parse(written: &str) -> Result<Self, String> {
        if written.len() > MAX_KEY_LEN {
            return Err(format!("a claim key is at most {MAX_KEY_LEN} bytes"));
        }
        let Some(pointer) = written.strip_prefix('/') else {
            return Ok(Self::name(written));
        };
        let tokens = pointer
            .split('/')
            .map(|t| unescape(t).map(Into::into))
            .collect::<Result<Box<[Box<str>]>, String>>()
            .map_err(|e| format!("{written:?} is not a JSON Pointer: {e}"))?;
        Ok(Self(Repr::Pointer(Box::new(Pointer {
            written: written.into(),
            tokens,
        }))))
    }

    /// The key for one top-level claim name.
    pub fn name(name: &str) -> Self {
        Self(Repr::Name(name.into()))
    }

    /// The key as written.
    pub fn written(&self) -> &str {
        match &self.0 {
            Repr::Name(name) => name,
            Repr::Pointer(pointer) => &pointer.written,
        }
    }

    /// The reference tokens, which identify the claim: `x` and `/x` have the same.
    fn tokens(&self) -> &[Box<str>] {
        match &self.0 {
            Repr::Name(name) => std::slice::from_ref(name),
            Repr::Pointer(pointer) => &pointer.tokens,
        }
    }

    /// The top-level claim this key names, when it names one (`x` and `/x` both name `x`).
    pub fn top_level(&self) -> Option<&str> {
        match self.tokens() {
            [name] => Some(name),
            _ => None,
        }
    }

    /// Whether this key names the top-level claim `name`.
    pub fn is(&self, name: &str) -> bool {
        self.top_level() == Some(name)
    }

    /// The value this key leads to; `None` when it leads nowhere (an absent member, an index
    /// past the end or not written as RFC 6901 says, a step into a scalar).
    pub fn resolve<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.tokens().split_first()?;
        let mut value = claims.get(&**first)?;
        for token in rest {
            value = match value {
                Value::Object(members) => members.get(&**token)?,
                Value::Array(items) => items.get(array_index(token)?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

impl PartialEq for ClaimKey {
    fn eq(&self, other: &Self) -> bool {
        self.tokens() == other.tokens()
    }
}

impl Eq for ClaimKey {}

impl Hash for ClaimKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.tokens().hash(state);
    }
}

impl PartialOrd for ClaimKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClaimKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.tokens().cmp(other.tokens())
    }
}

impl fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.written())
    }
}

/// RFC 6901 §4: `~1` is `/`, `~0` is `~`, and `~` followed by anything else is an error
/// (rather than a literal `~`: a typo in a policy must not quietly name another claim).
fn unescape(token: &str) -> Result<String, String> {
    if !token.contains('~') {
        return Ok(token.to_owned());
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err("`~` must be followed by `0` or `1`".into()),
        }
    }
    Ok(out)
}

/// RFC 6901 §4: an array index is `0` or digits without a leading zero; `-` (the element
/// after the last) and anything else lead nowhere.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// Escapes a claim name as one reference token (`a/b` → `a~1b`).
pub fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn token() -> Value {
        json!({
            "sub": "system:serviceaccount:payments:deploy",
            "kubernetes.io": {
                "namespace": "payments",
                "serviceaccount": {"name": "deploy", "uid": "5a1c"},
                "pod": {"name": "deploy-7f9", "uid": "9e2b"},
            },
            "groups": ["dev", "ops"],
            "a/b": "slash",
            "m~n": "tilde",
            "": "empty",
            "oidc.circleci.com/project-id": "p-1",
        })
    }

    #[test]
    fn a_name_key_is_no_bigger_than_a_string() {
        assert!(std::mem::size_of::<ClaimKey>() <= std::mem::size_of::<String>());
    }

    #[test]
    fn table() {
        let c = claims(token());
        let rows: &[(&str, Option<Value>)] = &[
            ("/kubernetes.io/namespace", Some(json!("payments"))),
            ("/kubernetes.io/serviceaccount/name", Some(json!("deploy"))),
            (
                "/kubernetes.io/pod",
                Some(token()["kubernetes.io"]["pod"].clone()),
            ),
            ("kubernetes.io/namespace", None),
            ("kubernetes.io", Some(token()["kubernetes.io"].clone())),
            ("/groups/0", Some(json!("dev"))),
            ("/groups/1", Some(json!("ops"))),
            ("/groups/2", None),
            ("/groups/-", None),
            ("/groups/01", None),
            ("/groups/+1", None),
            ("/groups/ 1", None),
            ("/sub/0", None),
            ("/sub/x", None),
            ("/a~1b", Some(json!("slash"))),
            ("a/b", Some(json!("slash"))),
            ("/a/b", None),
            ("/m~0n", Some(json!("tilde"))),
            ("/", Some(json!("empty"))),
            ("", Some(json!("empty"))),
            ("/oidc.circleci.com~1project-id", Some(json!("p-1"))),
            ("oidc.circleci.com/project-id", Some(json!("p-1"))),
            ("/kubernetes.io/namespace/", None),
            ("/missing/deeper", None),
        ];
        for (key, want) in rows {
            let key = ClaimKey::parse(key).unwrap();
            assert_eq!(key.resolve(&c), want.as_ref(), "{key}");
        }
    }

    #[test]
    fn bad_escapes_are_refused() {
        for bad in ["/a~", "/a~2", "/~x/b", "/a/~"] {
            let e = ClaimKey::parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("`~`"), "{e}");
        }
        // Only pointers are unescaped: a name may hold any text.
        assert!(ClaimKey::parse("a~2").is_ok());
        assert!(ClaimKey::parse(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn a_one_token_pointer_is_the_same_claim_as_the_name() {
        let by_name = ClaimKey::parse("repository_owner_id").unwrap();
        let by_pointer = ClaimKey::parse("/repository_owner_id").unwrap();
        assert_eq!(by_name, by_pointer);
        assert_eq!(by_pointer.top_level(), Some("repository_owner_id"));
        assert!(by_pointer.is("repository_owner_id"));
        assert_eq!(by_pointer.written(), "/repository_owner_id");
        assert_eq!(ClaimKey::parse("/a~1b").unwrap(), ClaimKey::name("a/b"));
        assert_ne!(ClaimKey::parse("/a/b").unwrap(), ClaimKey::name("a/b"));
        assert_eq!(
            ClaimKey::parse("/kubernetes.io/namespace")
                .unwrap()
                .top_level(),
            None
        );
    }

    /// Claim trees whose names collide with the pointer syntax.
    fn tree() -> impl Strategy<Value = Value> {
        let name = prop::sample::select(vec!["a", "b", "0", "1", "01", "-", "a/b", "~", "~1", ""]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0u8..3).prop_map(|n| json!(n)),
            "[ab]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(name.clone(), inner, 0..4).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    /// Pointers of tokens that exercise escapes and indexes.
    fn pointer() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "a", "b", "0", "1", "2", "01", "-", "a~1b", "~0", "~01", "", "x",
        ]);
        prop::collection::vec(token, 1..5).prop_map(|t| format!("/{}", t.join("/")))
    }

    proptest! {
        /// Resolution agrees with serde_json's own RFC 6901 implementation.
        #[test]
        fn resolves_as_the_reference_pointer(
            top in prop::collection::btree_map("[ab01~/-]{0,2}", tree(), 0..5),
            pointer in pointer(),
        ) {
            let map: Map<String, Value> = top.into_iter().collect();
            let document = Value::Object(map.clone());
            let key = ClaimKey::parse(&pointer).unwrap();
            prop_assert_eq!(key.resolve(&map), document.pointer(&pointer), "{}", pointer);
        }

        /// Any name, escaped as one token, is the same claim as the name itself.
        #[test]
        fn an_escaped_name_is_that_name(name in ".{0,6}", value in "[a-z]{0,3}") {
            let map: Map<String, Value> = [(name.clone(), json!(value))].into_iter().collect();
            let pointer = ClaimKey::parse(&format!("/{}", escape(&name))).unwrap();
            let plain = ClaimKey::name(&name);
            prop_assert_eq!(&pointer, &plain);
            prop_assert_eq!(pointer.resolve(&map), Some(&json!(value)));
            prop_assert_eq!(plain.resolve(&map), Some(&json!(value)));
        }
    }
}
