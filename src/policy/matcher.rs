//! Compiled claim matchers: where a claim is matched.
//!
//! Every pattern is compiled once, when a policy is loaded, and anchored as a whole
//! (`^(?:p)$`): the classic bug `"^" + "main|dev" + "$"` anchors only the outer alternatives
//! and lets `main-evil` through.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use regex_automata::meta::{self, Regex};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use serde_json::Value;

use super::document::MatcherDoc;

/// Compiled regexes are bounded so a hostile policy cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Patterns longer than this are refused outright.
const MAX_PATTERN_LEN: usize = 1024;

/// A matcher ready to test claims.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Exact, case-sensitive equality.
    Exact(String),
    /// A glob, matched directly (no regex: globs are most of a large policy set's matchers,
    /// and a compiled regex costs kilobytes). Boxed: inline, its four parts made every
    /// matcher 72 bytes where 32 hold the others, and a large policy set holds several
    /// matchers per policy, most of them not globs.
    Glob(Box<Glob>),
    /// A regex, compiled and anchored.
    Pattern {
        /// The compiled, anchored form, shared by every policy with the same pattern: a
        /// `Regex` clone would carry its own pool of match caches, one `Arc` shares one.
        regex: Arc<Regex>,
        /// The pattern as written, for explanations.
        source: String,
    },
    /// Exactly one of these values.
    OneOf(Vec<String>),
}

/// Compiled regexes by pattern. Large policy sets repeat patterns (`deploy|release` in
/// thousands of policies), and a compiled regex costs about 11 KB: one compilation per
/// distinct pattern is enough.
#[derive(Debug, Default)]
pub struct RegexCache(HashMap<String, Arc<Regex>>);

impl RegexCache {
    /// The anchored regex for `pattern`, compiled on first use.
    fn anchored(&mut self, pattern: &str) -> Result<Arc<Regex>, String> {
        if let Some(regex) = self.0.get(pattern) {
            return Ok(regex.clone());
        }
        let regex = Arc::new(build_anchored(check_standalone(check_len(pattern)?)?)?);
        self.0.insert(pattern.to_owned(), regex.clone());
        Ok(regex)
    }
}

impl Matcher {
    /// Compiles a written matcher, or says why it cannot be.
    pub fn compile(doc: &MatcherDoc) -> Result<Self, String> {
        Self::compile_with(doc, &mut RegexCache::default())
    }

    /// As [`Matcher::compile`], sharing regexes compiled before through `regexes`.
    pub fn compile_with(doc: &MatcherDoc, regexes: &mut RegexCache) -> Result<Self, String> {
        match doc {
            MatcherDoc::Exact(v) => Ok(Matcher::Exact(v.clone())),
            MatcherDoc::OneOf(values) if values.is_empty() => {
                Err("`one_of` needs at least one value".into())
            }
            MatcherDoc::OneOf(values) => Ok(Matcher::OneOf(values.clone())),
            MatcherDoc::Glob(g) => Ok(Matcher::Glob(Box::new(Glob::parse(check_len(g)?)))),
            MatcherDoc::Regex(r) => Ok(Matcher::Pattern {
                regex: regexes.anchored(r)?,
                source: r.clone(),
            }),
        }
    }

    /// Does this claim value match? Absent claims are handled by the caller (never match).
    ///
    /// Strings compare as they are; numbers and booleans by their JSON text; an array matches
    /// when one of its scalar elements does (as Vault's bound claims do for `groups`);
    /// objects and null never match.
    pub fn matches(&self, value: &Value) -> bool {
        match value {
            Value::Array(items) => items.iter().any(|v| self.matches_scalar(v)),
            other => self.matches_scalar(other),
        }
    }

    fn matches_scalar(&self, value: &Value) -> bool {
        let Some(text) = scalar_text(value) else {
            return false;
        };
        match self {
            Matcher::Exact(expected) => *expected == text,
            Matcher::OneOf(values) => values.iter().any(|v| *v == text),
            Matcher::Glob(glob) => glob.matches(&text),
            Matcher::Pattern { regex, .. } => regex.is_match(text.as_ref()),
        }
    }

    /// True when the matcher admits exactly one value (used for owner pins).
    pub fn is_exact(&self) -> bool {
        matches!(self, Matcher::Exact(_) | Matcher::OneOf(_))
    }

    /// The text that every matching value starts with (for owner-pin checks).
    pub fn literal_prefix(&self) -> Cow<'_, str> {
        match self {
            Matcher::Exact(v) => Cow::Borrowed(v),
            Matcher::OneOf(values) => Cow::Owned(common_prefix(values)),
            Matcher::Glob(glob) => Cow::Borrowed(glob.literal_prefix()),
            Matcher::Pattern { source, .. } => Cow::Owned(regex_literal_prefix(source)),
        }
    }

    /// How the matcher reads, for explanations to admins.
    pub fn describe(&self) -> String {
        match self {
            Matcher::Exact(v) => format!("equals {v:?}"),
            Matcher::OneOf(values) => format!("one of {values:?}"),
            Matcher::Glob(glob) => format!("glob {:?}", glob.source),
            Matcher::Pattern { source, .. } => format!("regex {source:?}"),
        }
    }
}

/// A claim's text as policies compare it: strings as they are, numbers and booleans as
/// their JSON text; anything else has no text.
pub fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn check_len(pattern: &str) -> Result<&str, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern longer than {MAX_PATTERN_LEN} bytes"));
    }
    Ok(pattern)
}

/// The pattern must be a whole regex by itself: `main)|(dev` would otherwise close the
/// anchoring group and compile as `^(?:main)|(dev)$`, anchored at one end per branch.
fn check_standalone(pattern: &str) -> Result<&str, String> {
    regex_syntax::Parser::new()
        .parse(pattern)
        .map(|_| pattern)
        .map_err(|e| format!("regex does not compile: {e}"))
}

/// Anchors the whole pattern, not just its first and last alternatives.
///
/// No lazy DFA (the `regex` crate's default engine for `is_match`): it keeps a cache of
/// states per regex *per thread*, which grows on use. Claim values are short, and there the
/// bounded backtracker, which needs no cache worth counting, matches as fast: measured on a
/// GitHub `job_workflow_ref` pattern and value, 286 vs 267 ns a match once the lazy DFA is
/// warm (and 0.7 vs 42.8 KB of cache per regex and thread after use). With 10,000 policies
/// over 100 issuers (101 distinct regexes), those caches were ~7 MB of the broker's heap
/// after the benchmark's peak; with a distinct regex per policy they would keep growing (up
/// to the cache limit per regex and thread).
fn build_anchored(pattern: &str) -> Result<Regex, String> {
    let config = meta::Config::new()
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .onepass_size_limit(Some(REGEX_SIZE_LIMIT))
        .hybrid(false);
    meta::Builder::new()
        .configure(config)
        .build(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("regex does not compile: {e}"))
}

/// A glob: `*` matches within one segment (never `/` or `:`), `**` (two or more stars)
/// across segments; everything else is literal, and the whole value must match.
///
/// Kept as the literal text before the first star, the literal text after the last, and the
/// atoms between: most globs are `literal*literal` or `literal**`, so matching is two
/// comparisons and a scan of what the star covers, and a large policy set keeps its globs
/// as text rather than as one atom per character.
#[derive(Debug, Clone)]
pub struct Glob {
    source: Box<str>,
    prefix: Box<str>,
    /// From the first star through the last; empty when the glob has no star.
    middle: Box<[Atom]>,
    suffix: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// `*`: any run without `/` or `:`.
    Segment,
    /// `**`: any run.
    Any,
}

impl Glob {
    fn parse(glob: &str) -> Self {
        let (Some(first), Some(last)) = (glob.find('*'), glob.rfind('*')) else {
            return Self {
                source: glob.into(),
                prefix: glob.into(),
                middle: Box::default(),
                suffix: Box::default(),
            };
        };
        let mut middle = Vec::new();
        let mut chars = glob[first..=last].chars().peekable();
        while let Some(c) = chars.next() {
            if c != '*' {
                middle.push(Atom::Char(c));
                continue;
            }
            let mut stars = 1;
            while chars.next_if_eq(&'*').is_some() {
                stars += 1;
            }
            middle.push(if stars == 1 { Atom::Segment } else { Atom::Any });
        }
        Self {
            source: glob.into(),
            prefix: glob[..first].into(),
            middle: middle.into(),
            suffix: glob[last + 1..].into(),
        }
    }

    fn matches(&self, value: &str) -> bool {
        // Stripping the prefix first, then the suffix from what is left, keeps the two from
        // overlapping in a value shorter than both.
        let Some(covered) = value
            .strip_prefix(&*self.prefix)
            .and_then(|rest| rest.strip_suffix(&*self.suffix))
        else {
            return false;
        };
        match *self.middle {
            [] => covered.is_empty(),
            [Atom::Segment] => !covered.contains(['/', ':']),
            [Atom::Any] => true,
            _ => self.matches_middle(covered),
        }
    }

    /// Simulates the middle atoms as an NFA: time O(value × pattern), no backtracking, so
    /// no pattern can make matching slow.
    fn matches_middle(&self, value: &str) -> bool {
        let atoms = &self.middle;
        let n = atoms.len();
        let mut current = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        current[0] = true;
        close(atoms, &mut current);
        for c in value.chars() {
            next.iter_mut().for_each(|s| *s = false);
            for (i, atom) in atoms.iter().enumerate() {
                if !current[i] {
                    continue;
                }
                match *atom {
                    Atom::Char(expected) if expected == c => next[i + 1] = true,
                    Atom::Char(_) => {}
                    Atom::Segment if c == '/' || c == ':' => {}
                    Atom::Segment | Atom::Any => next[i] = true,
                }
            }
            close(atoms, &mut next);
            if !next.contains(&true) {
                return false;
            }
            std::mem::swap(&mut current, &mut next);
        }
        current[n]
    }

    /// The text before the first star.
    fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// The glob as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Stars may match nothing: a state on a star also stands past it.
fn close(atoms: &[Atom], states: &mut [bool]) {
    for (i, atom) in atoms.iter().enumerate() {
        if states[i] && !matches!(atom, Atom::Char(_)) {
            states[i + 1] = true;
        }
    }
}

/// The literal text every match of a regex starts with (for owner pins), from the parsed
/// pattern rather than its text: a quantifier, a group or an alternation anywhere changes
/// what the text before it means (`repo:acme/+*` is `repo:acme` then any number of `/`).
/// The prefix extractor yields literals of which every match starts with one; their common
/// prefix is what every match starts with. Anything it cannot bound yields no prefix.
fn regex_literal_prefix(pattern: &str) -> String {
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return String::new();
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let bytes = seq.longest_common_prefix().unwrap_or_default();
    // The extractor cuts long literals by bytes; keep only whole characters.
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()])
            .unwrap_or_default()
            .to_owned(),
    }
}

fn common_prefix(values: &[String]) -> String {
    let Some(first) = values.first() else {
        return String::new();
    };
    let mut len = first.len();
    for v in &values[1..] {
        len = first
            .char_indices()
            .zip(v.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(len);
    }
    first[..len].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use serde_json::json;

    #[test]
    fn a_matcher_is_no_bigger_than_its_largest_unboxed_variant() {
        // A large policy set holds several matchers per policy (see `Matcher::Glob`).
        assert!(std::mem::size_of::<Matcher>() <= 32);
    }

    fn m(doc: MatcherDoc) -> Matcher {
        Matcher::compile(&doc).unwrap()
    }

    #[test]
    fn table() {
        use MatcherDoc::*;
        let g = |s: &str| Glob(s.into());
        let r = |s: &str| Regex(s.into());
        let rows: Vec<(&str, MatcherDoc, Value, bool)> = vec![
            ("exact", Exact("main".into()), json!("main"), true),
            (
                "exact is case-sensitive",
                Exact("main".into()),
                json!("Main"),
                false,
            ),
            (
                "exact no prefix",
                Exact("repo:acme/api".into()),
                json!("repo:acme/api-evil"),
                false,
            ),
            (
                "unicode look-alike",
                Exact("acme".into()),
                json!("аcme"),
                false,
            ),
            (
                "number by text",
                Exact("892174522".into()),
                json!(892174522),
                true,
            ),
            ("bool by text", Exact("true".into()), json!(true), true),
            ("float text", Exact("1.5".into()), json!(1.5), true),
            ("null never", Exact("null".into()), json!(null), false),
            ("object never", Exact("{}".into()), json!({}), false),
            (
                "array any",
                Exact("admin".into()),
                json!(["dev", "admin"]),
                true,
            ),
            ("array none", Exact("admin".into()), json!(["dev"]), false),
            (
                "glob star segment",
                g("refs/heads/*"),
                json!("refs/heads/main"),
                true,
            ),
            (
                "glob star no slash",
                g("refs/heads/*"),
                json!("refs/heads/a/b"),
                false,
            ),
            (
                "glob star no colon",
                g("repo:acme/*"),
                json!("repo:acme/api:ref:x"),
                false,
            ),
            (
                "glob double star",
                g("repo:acme/**"),
                json!("repo:acme/api:ref:x"),
                true,
            ),
            ("glob literal dot", g("a.b"), json!("axb"), false),
            ("glob anchored", g("main"), json!("xmain"), false),
            (
                "regex anchored alternation",
                r("main|dev"),
                json!("main-evil"),
                false,
            ),
            ("regex alternation ok", r("main|dev"), json!("dev"), true),
            ("regex prefix anchored", r("v[0-9]+"), json!("xv1"), false),
            ("regex match", r("v[0-9]+"), json!("v12"), true),
            (
                "one_of",
                OneOf(vec!["1".into(), "2".into()]),
                json!("2"),
                true,
            ),
            (
                "one_of number",
                OneOf(vec!["1".into(), "2".into()]),
                json!(2),
                true,
            ),
            (
                "one_of miss",
                OneOf(vec!["1".into(), "2".into()]),
                json!("12"),
                false,
            ),
        ];
        for (name, doc, value, want) in rows {
            assert_eq!(m(doc).matches(&value), want, "{name}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Matcher::compile(&MatcherDoc::Regex("(".into())).is_err());
        assert!(Matcher::compile(&MatcherDoc::Regex("a{10000}{10000}".into())).is_err());
        assert!(Matcher::compile(&MatcherDoc::OneOf(vec![])).is_err());
        assert!(Matcher::compile(&MatcherDoc::Glob("x".repeat(5000))).is_err());
    }

    #[test]
    fn literal_prefixes() {
        let p = |d| m(d).literal_prefix().into_owned();
        assert_eq!(
            p(MatcherDoc::Glob("repo:acme/*:ref:x".into())),
            "repo:acme/"
        );
        assert_eq!(
            p(MatcherDoc::Regex(r"repo:acme/api:.*".into())),
            "repo:acme/api:"
        );
        assert_eq!(
            p(MatcherDoc::Regex(r"repo:acme\.io/x".into())),
            "repo:acme.io/x"
        );
        assert_eq!(p(MatcherDoc::Regex(r"repo:acmes?/x".into())), "repo:acme");
        assert_eq!(p(MatcherDoc::Regex(r"repo:acme/x|.*".into())), "");
        // A quantifier ends the prefix and takes the character it applies to with it.
        for bypass in [
            "repo:acme/+*.*",
            "repo:acme/+{0}.*",
            "repo:acme/{0,}.*",
            "repo:acme/*.*",
            "repo:acme/?.*",
            "repo:acme(/)?.*",
            "repo:acme/{0,3}.*",
        ] {
            assert_eq!(p(MatcherDoc::Regex(bypass.into())), "repo:acme", "{bypass}");
        }
        assert_eq!(p(MatcherDoc::Regex(r"repo:acme/+.*".into())), "repo:acme/");
        assert_eq!(
            p(MatcherDoc::Regex(r"(repo:acme/a|repo:acme/b).*".into())),
            "repo:acme/"
        );
        assert_eq!(p(MatcherDoc::Regex(r"(?i)repo:acme/.*".into())), "");
        assert_eq!(
            p(MatcherDoc::OneOf(vec![
                "repo:acme/a".into(),
                "repo:acme/b".into()
            ])),
            "repo:acme/"
        );
    }

    /// The glob as a regex, the obvious way: the reference the split matcher must agree with.
    fn reference(glob: &str) -> Regex {
        let mut re = String::from("^");
        let mut chars = glob.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '*' {
                re.push_str(&regex_syntax::escape(&c.to_string()));
                continue;
            }
            let mut stars = 1;
            while chars.next_if_eq(&'*').is_some() {
                stars += 1;
            }
            re.push_str(if stars == 1 { "[^/:]*" } else { ".*" });
        }
        re.push('$');
        Regex::new(&re).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn globs_match_as_their_reference_regex(
            glob in "[ab/:*]{0,8}",
            value in "[ab/:]{0,10}",
        ) {
            proptest::prop_assert_eq!(
                Glob::parse(&glob).matches(&value),
                reference(&glob).is_match(&value),
                "glob {:?} on {:?}", glob, value
            );
        }
    }

    /// A regex built of pieces that make prefix analysis hard: literals with and without
    /// quantifiers (which apply to their last character), groups, classes and alternations.
    fn tricky_regex() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let atom = prop::sample::select(vec![
            "repo",
            ":",
            "acme",
            "/",
            "-",
            "evil",
            "x",
            ".",
            "[a-z]",
            "(acme|evil)",
            "(/|-)",
            "(repo:acme/)",
            r"\.",
            "[/:]",
        ]);
        let quantifier = prop::sample::select(vec![
            "", "", "", "+", "*", "?", "{0}", "{0,}", "{1,2}", "+?", "*?", "{0,1}",
            // Stacked: the outer one may undo the inner's "at least one".
            "+*", "+{0}", "+?", "{1}{0,}", "{2}?",
        ]);
        let piece = (atom, quantifier).prop_map(|(a, q)| format!("{a}{q}"));
        (
            prop::bool::ANY,
            prop::collection::vec(piece, 1..8),
            prop::bool::ANY,
        )
            .prop_map(|(lead, pieces, tail)| {
                let mut re = if lead {
                    "repo:acme/".to_owned()
                } else {
                    String::new()
                };
                re.push_str(&pieces.concat());
                if tail {
                    re.push_str(".*");
                }
                re
            })
    }

    proptest::proptest! {
        /// Whatever the regex, every value it matches starts with its literal prefix; so a
        /// regex judged to pin an owner admits no value of another owner.
        #[test]
        fn every_regex_match_starts_with_its_literal_prefix(
            (pattern, values) in tricky_regex().prop_flat_map(|re| {
                let values = proptest::string::string_regex(&re).unwrap();
                (proptest::strategy::Just(re), proptest::collection::vec(values, 16))
            })
        ) {
            let matcher = m(MatcherDoc::Regex(pattern.clone()));
            let prefix = matcher.literal_prefix().into_owned();
            for value in values {
                proptest::prop_assert!(matcher.matches(&json!(value)), "{:?} generated {:?}", pattern, value);
                proptest::prop_assert!(
                    value.starts_with(&prefix),
                    "{:?} matches {:?}, which does not start with {:?}", pattern, value, prefix
                );
            }
            for other in ["repo:acme-evil/x", "repo:acmeevil/x", "repo:acm/x", "repo:evil/acme/x"] {
                if prefix.starts_with("repo:acme/") {
                    proptest::prop_assert!(!matcher.matches(&json!(other)), "{:?} admits {:?}", pattern, other);
                }
            }
        }
    }

    #[test]
    fn glob_prefix_and_suffix_do_not_overlap() {
        assert!(!Glob::parse("ab*ba").matches("aba"));
        assert!(Glob::parse("ab*ba").matches("abba"));
        assert!(Glob::parse("a**a").matches("a/a"));
        assert!(!Glob::parse("a**a").matches("a"));
    }
}
