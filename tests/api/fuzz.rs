//! Property tests over the parsers that hostile input reaches: no input may panic, and the
//! invariants each parser promises hold for every input.
//!
//! Cases per property default to a few hundred so `cargo test` stays fast; set
//! `PROPTEST_CASES` for a long run, e.g.
//! `PROPTEST_CASES=200000 cargo test --release --test api fuzz`.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value};
use sts_broker::http::body::Params;
use sts_broker::jose::b64url;
use sts_broker::jose::jws::{self, DecodeError, MAX_TOKEN_BYTES};
use sts_broker::policy::load::Bundle;
use sts_broker::policy::matcher::Matcher;
use sts_broker::policy::template::Template;
use sts_broker::policy::{Limits, MatcherDoc};

/// `default` cases, or `PROPTEST_CASES`; no regression files are written into the tree.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared generators
// ---------------------------------------------------------------------------------------------

/// Characters that tend to matter to the parsers under test, plus some multi-byte ones so
/// that slicing at a non-boundary would show up.
const SPICY: &[char] = &[
    '.', '=', '-', '_', '+', '/', ':', '*', '?', '{', '}', '[', ']', '"', '\'', '\\', '%', '&',
    '#', '|', ',', ' ', '\t', '\n', '\r', '\0', 'a', 'Z', '0', 'é', '€', '😀', '\u{2028}',
    '\u{85}', '\u{feff}',
];

fn spicy_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => proptest::sample::select(SPICY),
        1 => any::<char>(),
    ]
}

/// One edit of a string: flip, insert or delete one character.
#[derive(Debug, Clone)]
enum CharEdit {
    Flip(Index, char),
    Insert(Index, char),
    Delete(Index),
}

fn char_edit() -> impl Strategy<Value = CharEdit> {
    prop_oneof![
        (any::<Index>(), spicy_char()).prop_map(|(i, c)| CharEdit::Flip(i, c)),
        (any::<Index>(), spicy_char()).prop_map(|(i, c)| CharEdit::Insert(i, c)),
        any::<Index>().prop_map(CharEdit::Delete),
    ]
}

fn apply_char_edits(text: &str, edits: &[CharEdit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        match edit {
            CharEdit::Flip(i, c) if !chars.is_empty() => {
                let i = i.index(chars.len());
                chars[i] = *c;
            }
            CharEdit::Insert(i, c) => {
                let i = i.index(chars.len() + 1);
                chars.insert(i, *c);
            }
            CharEdit::Delete(i) if !chars.is_empty() => {
                chars.remove(i.index(chars.len()));
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Arbitrary JSON, kept small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,12}".prop_map(Value::String),
        "[ab/:*.\n]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A claims map whose keys are often the names templates use.
fn claim_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop_oneof!["[a-c]{1,2}", Just("repository".to_owned()), ".{0,4}"],
        json_value(),
        0..6,
    )
    .prop_map(|m| m.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// 1. Compact JWS decoding
// ---------------------------------------------------------------------------------------------

/// The invariants of every `decode` result.
fn check_decode(token: &str) -> Result<(), TestCaseError> {
    let result = jws::decode(token);
    if token.len() > MAX_TOKEN_BYTES {
        prop_assert_eq!(result.as_ref().err(), Some(&DecodeError::TooLarge));
    }
    if let Ok(jws) = &result {
        prop_assert!(token.len() <= MAX_TOKEN_BYTES);
        prop_assert!(token.starts_with(jws.signing_input));
        prop_assert_eq!(token.matches('.').count(), 2);
        prop_assert_eq!(jws.signing_input.matches('.').count(), 1);
        // The signature segment is what follows `signing_input.`, and decodes canonically.
        let rest = &token[jws.signing_input.len()..];
        prop_assert_eq!(rest, format!(".{}", b64url(&jws.signature)));
        // Header and claims are objects (by type) that survive a round trip.
        let (h, p) = jws.signing_input.split_once('.').unwrap();
        let header: Value =
            serde_json::from_slice(&sts_broker::jose::b64url_decode(h).unwrap()).unwrap();
        prop_assert_eq!(&header, &Value::Object(jws.header.clone()));
        let claims: Value =
            serde_json::from_slice(&sts_broker::jose::b64url_decode(p).unwrap()).unwrap();
        prop_assert_eq!(&claims, &Value::Object(jws.claims.clone()));
    }
    Ok(())
}

/// A JSON object as text, members written in order (duplicates allowed), keys sometimes
/// written with `\u` escapes so that textually different keys collide after unescaping.
fn object_text() -> impl Strategy<Value = (String, Vec<String>)> {
    let member = ("[abA]{1,2}", any::<bool>(), json_value(), "[ \t\n\r]{0,2}");
    prop::collection::vec(member, 0..6).prop_map(|members| {
        let mut keys = Vec::new();
        let mut text = String::from("{");
        for (n, (key, escape, value, ws)) in members.into_iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            text.push_str(&ws);
            let written: String = if escape {
                key.chars()
                    .map(|c| format!("\\u{:04x}", c as u32))
                    .collect()
            } else {
                key.clone()
            };
            text.push_str(&format!("\"{written}\"{ws}:{ws}{value}"));
            keys.push(key);
        }
        text.push('}');
        (text, keys)
    })
}

fn has_duplicates(keys: &[String]) -> bool {
    let mut seen = std::collections::HashSet::new();
    keys.iter().any(|k| !seen.insert(k))
}

/// A valid-looking token to mutate.
fn valid_token() -> impl Strategy<Value = String> {
    (claim_map(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(claims, sig)| {
        let header = r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#;
        format!(
            "{}.{}.{}",
            b64url(header.as_bytes()),
            b64url(Value::Object(claims).to_string().as_bytes()),
            b64url(&sig)
        )
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_jws_arbitrary_strings(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=.+/-]{0,120}",
        prop::collection::vec(spicy_char(), 0..64).prop_map(|v| v.into_iter().collect()),
    ]) {
        check_decode(&token)?;
    }

    #[test]
    fn fuzz_jws_encoded_segments(
        segments in prop_oneof![
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 3),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 5),
            // Segments that are JSON, so decoding gets past base64.
            prop::collection::vec(json_value().prop_map(|v| v.to_string().into_bytes()), 3),
            prop::collection::vec(json_value().prop_map(|v| v.to_string().into_bytes()), 5),
        ],
    ) {
        let token = segments.iter().map(|s| b64url(s)).collect::<Vec<_>>().join(".");
        let result = jws::decode(&token);
        if segments.len() == 5 {
            prop_assert_eq!(result.as_ref().err(), Some(&DecodeError::Encrypted));
        }
        check_decode(&token)?;
    }

    #[test]
    fn fuzz_jws_mutated_token(
        token in valid_token(),
        edits in prop::collection::vec(char_edit(), 0..6),
    ) {
        prop_assert!(jws::decode(&token).is_ok(), "unmutated token must decode: {token}");
        check_decode(&apply_char_edits(&token, &edits))?;
    }

    #[test]
    fn fuzz_jws_duplicate_members(
        (header, header_keys) in object_text(),
        (claims, claim_keys) in object_text(),
        sig in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let token = format!(
            "{}.{}.{}",
            b64url(header.as_bytes()),
            b64url(claims.as_bytes()),
            b64url(&sig)
        );
        let result = jws::decode(&token);
        if has_duplicates(&header_keys) || has_duplicates(&claim_keys) {
            prop_assert_eq!(result.as_ref().err(), Some(&DecodeError::DuplicateKey));
        } else {
            let jws = result.map_err(|e| TestCaseError::fail(format!("{e:?}: {token}")))?;
            prop_assert_eq!(jws.header.len(), header_keys.len());
            prop_assert_eq!(jws.claims.len(), claim_keys.len());
            prop_assert_eq!(jws.signature, sig);
        }
        check_decode(&token)?;
    }

    #[test]
    fn fuzz_jws_oversized(
        filler in prop_oneof![Just('a'), Just('.'), spicy_char()],
        extra in 1usize..4096,
        tail in ".{0,16}",
    ) {
        let mut token = String::new();
        while token.len() < MAX_TOKEN_BYTES + extra {
            token.push(filler);
        }
        token.push_str(&tail);
        prop_assert_eq!(jws::decode(&token).err(), Some(DecodeError::TooLarge));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Policy documents
// ---------------------------------------------------------------------------------------------

const FILE: &str = "fuzz/policies.yaml";

const LIMITS: Limits = Limits {
    max_ttl: Duration::from_secs(3600),
    allow_insecure_loopback_issuers: false,
    read_app_keys: false,
};

/// The integration tests' policies, with a real issuer URL.
fn helpers_policies() -> String {
    crate::helpers::POLICIES.replace("{IDP}", "https://idp.example.com")
}

const SEEDS: &[&str] = &[
    include_str!("../../policies/github-actions.yaml"),
    include_str!("../../policies/gitlab-ci.yaml"),
];

/// Lines worth splicing into a policy file.
const YAML_LINES: &[&str] = &[
    "---",
    "--- # c",
    "...",
    "kind: Issuer",
    "kind: TrustPolicy",
    "kind: Isuer",
    "name: gh",
    "name: .bad",
    "issuer: gh",
    "url: https://token.actions.githubusercontent.com",
    "url: http://127.0.0.1:1",
    "audiences: [sts]",
    "audiences: []",
    "algorithms: [HS256, none]",
    "shared: true",
    "subject: {glob: \"**\"}",
    "subject: {regex: \"(\"}",
    "subject: {regex: \"a{10000}{10000}\"}",
    "subject: {one_of: []}",
    "subject: {glob: x, regex: y}",
    "claims:",
    "  repository_owner_id: {glob: \"1*\"}",
    "  x: [1, 2]",
    "grant:",
    "  audience: a",
    "  ttl: 99999999999999h",
    "  ttl: -1s",
    "  subject: \"{unclosed\"",
    "  claims: {a: \"{b}}\"}",
    "  scopes: [\"a b\"]",
    "a: &x [1, *x]",
    "b: *undefined",
    "? complex",
    ": value",
    "- item",
    "\t: tab",
    "%YAML 1.2",
    "!!binary x",
    "<<: {a: 1}",
    "\"unterminated",
    "key: |",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "",
];

/// One edit of a policy file: character edits and line edits.
#[derive(Debug, Clone)]
enum YamlEdit {
    Char(CharEdit),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    InsertLine(Index, &'static str),
    Indent(Index, usize),
}

fn yaml_edit() -> impl Strategy<Value = YamlEdit> {
    prop_oneof![
        3 => char_edit().prop_map(YamlEdit::Char),
        1 => any::<Index>().prop_map(YamlEdit::DeleteLine),
        1 => any::<Index>().prop_map(YamlEdit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| YamlEdit::SwapLines(a, b)),
        2 => (any::<Index>(), proptest::sample::select(YAML_LINES))
            .prop_map(|(i, l)| YamlEdit::InsertLine(i, l)),
        1 => (any::<Index>(), 0usize..4).prop_map(|(i, n)| YamlEdit::Indent(i, n)),
    ]
}

fn apply_yaml_edits(text: &str, edits: &[YamlEdit]) -> String {
    let mut text = text.to_owned();
    for edit in edits {
        if let YamlEdit::Char(e) = edit {
            text = apply_char_edits(&text, std::slice::from_ref(e));
            continue;
        }
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        let n = lines.len();
        match edit {
            YamlEdit::DeleteLine(i) => {
                lines.remove(i.index(n));
            }
            YamlEdit::DuplicateLine(i) => {
                let i = i.index(n);
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            YamlEdit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
            YamlEdit::InsertLine(i, l) => lines.insert(i.index(n + 1), (*l).to_owned()),
            YamlEdit::Indent(i, k) => {
                let i = i.index(n);
                lines[i] = format!("{}{}", " ".repeat(*k), lines[i].trim_start());
            }
            YamlEdit::Char(_) => unreachable!(),
        }
        text = lines.join("\n");
    }
    text
}

/// Parses and compiles `text`; every error names the file and a line inside it.
fn check_policy_text(text: &str) -> Result<(), TestCaseError> {
    check_policy_text_raw(text)
}

fn check_policy_text_raw(text: &str) -> Result<(), TestCaseError> {
    let lines = text.lines().count();
    let check = |errors: &[sts_broker::policy::load::LoadError]| -> Result<(), TestCaseError> {
        prop_assert!(!errors.is_empty());
        for e in errors {
            prop_assert!(
                e.line >= 1 && e.line <= lines + 1,
                "error line {} outside 1..={} for {:?}: {}",
                e.line,
                lines + 1,
                text,
                e
            );
            let shown = e.to_string();
            prop_assert!(
                shown.starts_with(&format!("{FILE}:")),
                "error does not start with the file name: {shown:?} for {text:?}"
            );
        }
        Ok(())
    };
    match Bundle::parse_str(Path::new(FILE), text) {
        Err(errors) => check(&errors)?,
        Ok(bundle) => {
            if let Err(errors) = bundle.compile_over(&[], &[], &LIMITS) {
                check(&errors)?;
            }
        }
    }
    Ok(())
}

fn yaml_seed() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(helpers_policies()),
        proptest::sample::select(SEEDS).prop_map(str::to_owned),
    ]
}

/// The mutation seeds are themselves valid, so mutations start from a policy that loads.
#[test]
fn fuzz_policy_seeds_are_valid() {
    for seed in std::iter::once(helpers_policies()).chain(SEEDS.iter().map(|s| s.to_string())) {
        let bundle = Bundle::parse_str(Path::new(FILE), &seed).unwrap();
        bundle.compile_over(&[], &[], &LIMITS).unwrap();
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_policy_arbitrary_text(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(spicy_char(), 0..80).prop_map(|v| v.into_iter().collect()),
        prop::collection::vec(proptest::sample::select(YAML_LINES), 0..16)
            .prop_map(|v| v.join("\n")),
    ]) {
        check_policy_text(&text)?;
    }

    #[test]
    fn fuzz_policy_mutated_documents(
        seed in yaml_seed(),
        edits in prop::collection::vec(yaml_edit(), 1..8),
    ) {
        check_policy_text(&apply_yaml_edits(&seed, &edits))?;
    }
}

/// Regression (found by this harness): YAML-only line breaks (lone `\r`, U+0085, U+2028,
/// U+2029) gave error lines past the end of the file; they are now refused at their line.
#[test]
fn regression_yaml_only_line_breaks() {
    for text in [
        "\"\r\r",
        "kind: Issuer\u{85}name: x\u{85}url: https://a\u{85}audiences: [a]\u{85}bogus: 1\u{85}",
        "kind: Issuer\u{2028}name: x\u{2028}url: https://a\u{2028}audiences: [a]\u{2028}b: 1",
    ] {
        if let Err(e) = check_policy_text_raw(text) {
            panic!("{text:?}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Templates and matchers
// ---------------------------------------------------------------------------------------------

/// Template text: mostly braces and claim-name characters.
fn template_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}a-c:._ -]{0,16}",
        "([a-z/]{0,4}\\{(repository|a|b|c)\\}){0,4}[a-z]{0,3}",
    ]
}

fn matcher_doc() -> impl Strategy<Value = MatcherDoc> {
    prop_oneof![
        any::<String>().prop_map(MatcherDoc::Exact),
        "[ab/:*.]{0,8}".prop_map(MatcherDoc::Exact),
        any::<String>().prop_map(MatcherDoc::Glob),
        "[ab/:*.?\\\\\\[]{0,10}".prop_map(MatcherDoc::Glob),
        any::<String>().prop_map(MatcherDoc::Regex),
        r"[ab/:.*+?()|\[\]{}^$\\0-2,dws-]{0,12}".prop_map(MatcherDoc::Regex),
        prop::collection::vec(prop_oneof![any::<String>(), "[ab/:]{0,4}"], 0..4)
            .prop_map(MatcherDoc::OneOf),
    ]
}

/// Reference glob: `*` is any run without `/` or `:`, `**` (or more stars) any run at all.
fn glob_reference(glob: &[char], text: &[char]) -> bool {
    match glob.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => {
            let double = rest.first() == Some(&'*');
            let rest: Vec<char> = rest.iter().copied().skip_while(|c| *c == '*').collect();
            (0..=text.len())
                .take_while(|&i| double || i == 0 || !matches!(text[i - 1], '/' | ':'))
                .any(|i| glob_reference(&rest, &text[i..]))
        }
        Some((c, rest)) => text.first() == Some(c) && glob_reference(rest, &text[1..]),
    }
}

/// Regression (found by this harness): an unbalanced `)` escaped the regex anchoring and the
/// owner-pin check; such patterns are now refused because they are not regexes by themselves.
#[test]
fn regression_regex_cannot_escape_its_anchor() {
    for pattern in ["main)|(dev", ":)?(", "repo:acme/)?(.*"] {
        let err = Matcher::compile(&MatcherDoc::Regex(pattern.into())).unwrap_err();
        assert!(err.contains("regex does not compile"), "{pattern}: {err}");
    }
    // `^(?:` + `main)|(dev` + `)$` is `^(?:main)|(dev)$`: anchored at one end per branch.
    if let Ok(m) = Matcher::compile(&MatcherDoc::Regex("main)|(dev".into())) {
        for v in ["main-evil", "pre-dev"] {
            assert!(
                !m.matches(&Value::String(v.into())),
                "`main)|(dev` matches {v:?}"
            );
        }
    }
    // Shrunk by proptest: matches "" although its literal prefix is ":".
    if let Ok(m) = Matcher::compile(&MatcherDoc::Regex(":)?(".into())) {
        assert!(
            !m.matches(&Value::String(String::new())),
            "`:)?(` matches \"\""
        );
    }
    // The same on a shared issuer: the literal prefix `repo:acme/` passes the owner-pin check,
    // yet the optional group admits every repository of every owner.
    let text = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\n\
                audiences: [sts]\nshared: true\n---\nkind: TrustPolicy\nname: p\nissuer: gh\n\
                subject: {regex: \"repo:acme/)?(.*\"}\ngrant: {audience: a}\n";
    if let Ok(set) = Bundle::parse_str(Path::new(FILE), text)
        .unwrap()
        .compile_over(&[], &[], &LIMITS)
    {
        let claims = serde_json::json!({"sub": "repo:evil/x:ref:refs/heads/main"});
        let admitted = set
            .policy("p")
            .unwrap()
            .admits(claims.as_object().unwrap(), None);
        assert!(
            !admitted,
            "shared-issuer policy admits another owner's repository"
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_template_parse_render(text in template_text(), claims in claim_map()) {
        let Ok(template) = Template::parse(&text) else { return Ok(()) };
        let names: Vec<String> = template.claim_names().map(str::to_owned).collect();
        // A name is one top-level claim; `{/a/b}` is a JSON Pointer (serde_json's own).
        let document = Value::Object(claims.clone());
        let renderable = names.iter().all(|n| {
            let value = if n.starts_with('/') { document.pointer(n) } else { claims.get(n) };
            matches!(value, Some(Value::String(_) | Value::Number(_) | Value::Bool(_)))
        });
        let rendered = template.render(&claims);
        prop_assert_eq!(rendered.is_some(), renderable, "{:?} over {:?}", text, claims);
        if names.is_empty() {
            // Only literals and doubled braces.
            let literal = text.replace("{{", "{").replace("}}", "}");
            prop_assert_eq!(rendered.as_deref(), Some(literal.as_str()));
        }
        let value = template.render_value(&claims);
        if let Some(s) = &rendered
            && (names.len() != 1 || text != format!("{{{}}}", names[0]))
        {
            prop_assert_eq!(value, Some(Value::String(s.clone())));
        }
    }

    #[test]
    fn fuzz_template_escaped_literal_round_trips(literal in any::<String>()) {
        let text = literal.replace('{', "{{").replace('}', "}}");
        let template = Template::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(template.claim_names().count(), 0);
        prop_assert_eq!(template.render(&Map::new()), Some(literal));
    }

    #[test]
    fn fuzz_matcher_compile_and_match(
        doc in matcher_doc(),
        values in prop::collection::vec(json_value(), 0..4),
    ) {
        let Ok(m) = Matcher::compile(&doc) else { return Ok(()) };
        let _ = m.describe();
        let prefix = m.literal_prefix().into_owned();
        for v in &values {
            let hit = m.matches(v);
            if let Value::Array(items) = v {
                prop_assert_eq!(hit, items.iter().any(|i| m.matches(i) && !i.is_array()));
            }
            if hit && let Value::String(s) = v {
                prop_assert!(s.starts_with(&prefix), "{:?} matches {:?}, prefix {:?}", doc, s, prefix);
            }
        }
    }

    #[test]
    fn fuzz_matcher_literal_prefix_holds(
        doc in prop_oneof![
            "[ab/:*.?\\\\]{0,10}".prop_map(MatcherDoc::Glob),
            r"[ab/:.*+?()|\[\]{}^$\\0-2,]{0,12}".prop_map(MatcherDoc::Regex),
            prop::collection::vec("[ab/:]{0,4}", 1..4).prop_map(MatcherDoc::OneOf),
        ],
        value in "[ab/:.]{0,8}",
    ) {
        let Ok(m) = Matcher::compile(&doc) else { return Ok(()) };
        if m.matches(&Value::String(value.clone())) {
            let prefix = m.literal_prefix();
            prop_assert!(value.starts_with(&*prefix), "{:?} matches {:?} but prefix is {:?}", doc, value, prefix);
        }
    }

    #[test]
    fn fuzz_glob_without_star_is_literal(
        glob in any::<String>().prop_map(|s| s.replace('*', "")),
        other in any::<String>(),
        suffix in prop_oneof![Just("\n".to_owned()), Just("x".to_owned()), ".{1,3}"],
    ) {
        let m = match Matcher::compile(&MatcherDoc::Glob(glob.clone())) {
            Ok(m) => m,
            Err(e) => {
                prop_assert!(glob.len() > 1024, "{:?}: {}", glob, e);
                return Ok(());
            }
        };
        let s = |t: &str| Value::String(t.to_owned());
        prop_assert!(m.matches(&s(&glob)));
        prop_assert_eq!(m.matches(&s(&other)), other == glob);
        let (longer, earlier) = (format!("{glob}{suffix}"), format!("{suffix}{glob}"));
        prop_assert!(!m.matches(&s(&longer)));
        prop_assert!(!m.matches(&s(&earlier)));
        let mut shorter = glob.clone();
        if shorter.pop().is_some() {
            prop_assert!(!m.matches(&s(&shorter)));
        }
        prop_assert_eq!(m.literal_prefix(), glob.as_str());
    }

    #[test]
    fn fuzz_glob_matches_reference(
        glob in "[ab/:*.?\\\\]{0,8}",
        // Newlines are left out: `**` compiles to `.*`, which stops at `\n` (see the report).
        value in "[ab/:.?*\\\\]{0,8}",
    ) {
        let m = Matcher::compile(&MatcherDoc::Glob(glob.clone())).unwrap();
        let g: Vec<char> = glob.chars().collect();
        let v: Vec<char> = value.chars().collect();
        prop_assert_eq!(
            m.matches(&Value::String(value.clone())),
            glob_reference(&g, &v),
            "glob {:?} value {:?}", glob, value
        );
    }

    #[test]
    fn fuzz_regex_alternation_is_anchored(
        value in prop_oneof![
            "[ab|\n\r ]{0,4}",
            any::<String>(),
            Just("a".to_owned()),
            Just("b".to_owned()),
        ],
    ) {
        let m = Matcher::compile(&MatcherDoc::Regex("a|b".into())).unwrap();
        let hit = m.matches(&Value::String(value.clone()));
        prop_assert_eq!(hit, value == "a" || value == "b", "{:?}", value);
        let longer = Value::Array(vec![Value::String(format!("{value}x"))]);
        prop_assert!(!m.matches(&longer));
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Form bodies
// ---------------------------------------------------------------------------------------------

fn form_body() -> impl Strategy<Value = Vec<u8>> {
    let pair = (
        prop_oneof![
            Just("grant_type".to_owned()),
            Just("subject_token".to_owned()),
            Just("audience".to_owned()),
            Just("scope".to_owned()),
            "[a-c%+=]{0,3}",
            "%[0-9a-fA-F]{0,2}",
        ],
        "[a-c%+=&;\u{e9}]{0,6}|%[0-9a-fA-F]{2}|%[fF][0-9a-fA-F]",
    );
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        prop::collection::vec(pair, 0..40).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_form_params(body in form_body()) {
        let parsed = Params::parse(&body);
        // Reference: parameters without a value are omitted; the rest must be at most 32,
        // each named once.
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&body)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut names = std::collections::HashSet::new();
        let distinct = pairs.iter().all(|(k, _)| names.insert(k.clone()));
        let ok = pairs.len() <= 32 && distinct;
        prop_assert_eq!(parsed.is_ok(), ok, "{:?}", String::from_utf8_lossy(&body));
        if let Ok(params) = parsed {
            for (k, v) in &pairs {
                prop_assert_eq!(params.get(k), Some(v.as_str()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The policy index
// ---------------------------------------------------------------------------------------------

/// A claim matcher over a small alphabet, so policies and tokens collide often.
fn index_matcher_yaml() -> impl Strategy<Value = String> {
    prop_oneof![
        "[12]{1,2}".prop_map(|v| format!("\"{v}\"")),
        prop::collection::vec("[12]{1,2}", 1..3).prop_map(|v| format!("{{one_of: {v:?}}}")),
        "[12*]{1,2}".prop_map(|v| format!("{{glob: \"{v}\"}}")),
        Just("{regex: \"1+\"}".to_owned()),
    ]
}

/// Policies of one issuer, each with one to three matchers on `a`, `b` and `sub`.
fn index_policies() -> impl Strategy<Value = String> {
    let policy = prop::collection::vec(
        (
            prop::sample::select(vec!["a", "b", "sub"]),
            index_matcher_yaml(),
        ),
        1..4,
    );
    prop::collection::vec(policy, 1..12).prop_map(|policies| {
        let mut text = "kind: Issuer\nname: gh\nurl: https://issuer.example\naudiences: [sts]\n"
            .to_owned();
        for (i, matchers) in policies.iter().enumerate() {
            text.push_str(&format!(
                "---\nkind: TrustPolicy\nname: p{i:02}\nissuer: gh\ngrant: {{audience: x}}\nclaims:\n"
            ));
            let mut seen = Vec::new();
            for (claim, matcher) in matchers {
                if !seen.contains(claim) {
                    seen.push(claim);
                    text.push_str(&format!("  {claim}: {matcher}\n"));
                }
            }
        }
        text
    })
}

/// Token claims over the same alphabet, sometimes numbers, arrays or absent.
fn index_claims() -> impl Strategy<Value = Map<String, Value>> {
    let value = prop_oneof![
        "[12]{1,2}".prop_map(Value::String),
        (1u64..23).prop_map(Value::from),
        prop::collection::vec("[12]{1,2}".prop_map(Value::String), 0..3).prop_map(Value::Array),
    ];
    prop::collection::btree_map(prop::sample::select(vec!["a", "b", "sub"]), value, 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

proptest! {
    #![proptest_config(config(256))]

    /// The index only skips policies that cannot admit the token: the admitting policies, in
    /// order, are the same whether every policy is tried or only the candidates.
    #[test]
    fn fuzz_index_skips_only_policies_that_cannot_admit(
        text in index_policies(),
        tokens in prop::collection::vec(index_claims(), 1..8),
    ) {
        let set = Bundle::parse_str(Path::new(FILE), &text)
            .unwrap()
            .compile_over(&[], &[], &LIMITS)
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        for claims in &tokens {
            let every: Vec<&str> = set
                .policies_for("gh")
                .iter()
                .filter(|p| p.admits(claims, None))
                .map(|p| p.name.as_str())
                .collect();
            let indexed: Vec<&str> = set
                .candidates("gh", claims)
                .filter(|p| p.admits(claims, None))
                .map(|p| p.name.as_str())
                .collect();
            prop_assert_eq!(every, indexed, "{:?}\n{}", claims, text);
        }
    }
}
