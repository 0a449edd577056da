//! The policy documents as admins write them (YAML files or admin-API JSON).
//!
//! Parsing is strict: unknown fields are refused, so a misspelt `claim:` can never turn a
//! constraint into nothing. These types only describe; [`super::set`] validates and compiles.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::HumanDuration;

/// The `kind:` of a policy test case (`policy test`): read beside the documents, never one
/// of them.
pub const TEST_KIND: &str = "PolicyTest";

/// The kinds of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// An identity provider whose tokens the broker accepts.
    Issuer,
    /// A rule that admits some of an issuer's tokens and says what they get.
    TrustPolicy,
    /// A GitHub App whose installation tokens policies may grant.
    GitHubApp,
}

impl Kind {
    /// The name used in `kind:` and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Issuer => "Issuer",
            Kind::TrustPolicy => "TrustPolicy",
            Kind::GitHubApp => "GitHubApp",
        }
    }

    /// Parses a `kind:` value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Issuer" => Some(Kind::Issuer),
            "TrustPolicy" => Some(Kind::TrustPolicy),
            "GitHubApp" => Some(Kind::GitHubApp),
            _ => None,
        }
    }
}

/// `kind: Issuer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerDoc {
    /// Accepted (and ignored) so one struct reads both YAML and admin JSON.
    #[serde(default, skip_serializing)]
    pub kind: Option<String>,
    /// Name that policies refer to.
    pub name: String,
    /// Must equal the inbound token's `iss` exactly.
    pub url: String,
    /// Accepted inbound `aud` values; mandatory.
    pub audiences: Vec<String>,
    /// Accepted inbound algorithms; default `[RS256, ES256]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// Prefix of the issued `sub`; `-` means none; default `<name>:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
    /// Anyone can get a token from this issuer: policies must pin an owner.
    #[serde(default)]
    pub shared: bool,
    /// Each `jti` is exchanged at most once.
    #[serde(default)]
    pub replay_protection: bool,
    /// Fetch keys from this JWKS URL instead of the one discovery names (for issuers whose
    /// keys live on another host, e.g. `accounts.google.com`). https only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Inbound `exp - iat` may not exceed this; default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_lifetime: Option<HumanDuration>,
    /// `event_name` values that only a policy matching `event_name` itself admits. Absent:
    /// `[pull_request_target, workflow_run]` for GitHub Actions' issuer (and the enterprise
    /// issuers under it), `[]` otherwise; `[]` turns the guard off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarded_events: Option<Vec<String>>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `kind: TrustPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyDoc {
    /// Accepted (and ignored) so one struct reads both YAML and admin JSON.
    #[serde(default, skip_serializing)]
    pub kind: Option<String>,
    /// Unique name; also the issued token's `client_id`.
    pub name: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Name of the `Issuer` document whose tokens this policy judges.
    pub issuer: String,
    /// Matcher for the inbound `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<MatcherDoc>,
    /// Every listed claim must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, MatcherDoc>,
    /// What an admitted token gets.
    pub grant: GrantDoc,
}

/// What an admitted token may be issued: a broker token (`audience`) or a GitHub
/// installation token (`github`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantDoc {
    /// The issued token's possible `aud` values (empty with `github`).
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub audience: OneOrMany,
    /// The scopes it may carry.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime ceiling for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    /// Template of the issued `sub` (before the issuer's prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Claims copied into the issued token, as templates over inbound claims.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// A GitHub installation token instead of a broker token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubGrantDoc>,
}

/// [`GrantDoc`] as read: `audience` is required unless `github` is given (whether both are
/// given is checked when the policy compiles, where the error has a line of its own).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRepr {
    #[serde(default)]
    audience: Option<OneOrMany>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    ttl: Option<HumanDuration>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    #[serde(default)]
    github: Option<GitHubGrantDoc>,
}

impl<'de> Deserialize<'de> for GrantDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(GrantVisitor)
    }
}

/// Reads the map inside the visitor, so that a missing `audience` is reported where the
/// grant's map is (its line), like any other missing field.
struct GrantVisitor;

impl<'de> Visitor<'de> for GrantVisitor {
    type Value = GrantDoc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a grant: a map with `audience` or `github`")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<GrantDoc, A::Error> {
        let r = GrantRepr::deserialize(de::value::MapAccessDeserializer::new(map))?;
        if r.audience.is_none() && r.github.is_none() {
            return Err(de::Error::missing_field("audience"));
        }
        Ok(GrantDoc {
            audience: r.audience.unwrap_or(OneOrMany(Vec::new())),
            scopes: r.scopes,
            ttl: r.ttl,
            subject: r.subject,
            claims: r.claims,
            github: r.github,
        })
    }
}

/// `grant.github`: what installation token of which app a policy may give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubGrantDoc {
    /// Name of the `GitHubApp` document.
    pub app: String,
    /// The account (organisation or user) whose installation of the app is used.
    pub owner: String,
    /// Repositories of that owner the token may reach; absent: the installation's own set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    /// Permission name to level (`contents: write`).
    pub permissions: BTreeMap<String, String>,
}

/// `kind: GitHubApp`: an app whose installation tokens policies may grant. The private key
/// is named, never written here: a document is stored, shown and audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubAppDoc {
    /// Accepted (and ignored) so one struct reads both YAML and admin JSON.
    #[serde(default, skip_serializing)]
    pub kind: Option<String>,
    /// Name that policies refer to.
    pub name: String,
    /// The app's id (the app JWT's `iss`).
    pub app_id: u64,
    /// A PEM file holding the app's RSA private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    /// An environment variable holding the PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
    /// GitHub's REST API; default `https://api.github.com` (Enterprise Server:
    /// `https://HOST/api/v3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A list that may also be written as a single string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "OneOrManyRepr", into = "Vec<String>")]
pub struct OneOrMany(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrManyRepr {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// No value at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<OneOrManyRepr> for OneOrMany {
    fn from(r: OneOrManyRepr) -> Self {
        match r {
            OneOrManyRepr::One(s) => OneOrMany(vec![s]),
            OneOrManyRepr::Many(v) => OneOrMany(v),
        }
    }
}

impl From<OneOrMany> for Vec<String> {
    fn from(v: OneOrMany) -> Self {
        v.0
    }
}

/// A claim matcher as written: a plain value, `{glob}`, `{regex}` or `{one_of}`.
#[derive(Debug, Clone, PartialEq)]
pub enum MatcherDoc {
    /// Exact, case-sensitive equality.
    Exact(String),
    /// `*` never crosses `/` or `:`; `**` does.
    Glob(String),
    /// Anchored at both ends, as a whole.
    Regex(String),
    /// Exactly one of these values.
    OneOf(Vec<String>),
}

impl Serialize for MatcherDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            MatcherDoc::Exact(v) => s.serialize_str(v),
            MatcherDoc::Glob(v) => single(s, "glob", v),
            MatcherDoc::Regex(v) => single(s, "regex", v),
            MatcherDoc::OneOf(v) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("one_of", v)?;
                m.end()
            }
        }
    }
}

fn single<S: Serializer>(s: S, key: &str, value: &str) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(key, value)?;
    m.end()
}

impl<'de> Deserialize<'de> for MatcherDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MatcherVisitor)
    }
}

struct MatcherVisitor;

/// One scalar inside `one_of`: strings, and numbers/booleans as their text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl<'de> Visitor<'de> for MatcherVisitor {
    type Value = MatcherDoc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, or a map with exactly one of `glob`, `regex`, `one_of`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MatcherDoc, E> {
        Ok(MatcherDoc::Exact(v.to_owned()))
    }
    // Unquoted YAML numbers and booleans mean their text, as tokens compare them.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MatcherDoc, E> {
        Ok(MatcherDoc::Exact(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MatcherDoc, E> {
        Ok(MatcherDoc::Exact(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MatcherDoc, E> {
        Ok(MatcherDoc::Exact(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MatcherDoc, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom(
                "empty matcher: use a string, or one of `glob`, `regex`, `one_of`",
            ));
        };
        let matcher = match key.as_str() {
            "glob" => MatcherDoc::Glob(map.next_value()?),
            "regex" => MatcherDoc::Regex(map.next_value()?),
            "one_of" => MatcherDoc::OneOf(
                map.next_value::<Vec<Scalar>>()?
                    .into_iter()
                    .map(Scalar::into_text)
                    .collect(),
            ),
            other => {
                return Err(de::Error::custom(format!(
                    "unknown matcher `{other}`, expected one of `glob`, `regex`, `one_of`"
                )));
            }
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a matcher has exactly one key; `{extra}` is one too many"
            )));
        }
        Ok(matcher)
    }
}
