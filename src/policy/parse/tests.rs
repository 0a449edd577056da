use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::document::{IssuerDoc, TrustPolicyDoc};

fn yaml_depth(v: &serde_yaml_ng::Value) -> usize {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Sequence(items) => 1 + items.iter().map(yaml_depth).max().unwrap_or(0),
        Y::Mapping(m) => {
            1 + m
                .iter()
                .map(|(k, v)| yaml_depth(k).max(yaml_depth(v)))
                .max()
                .unwrap_or(0)
        }
        Y::Tagged(t) => yaml_depth(&t.value),
        _ => 0,
    }
}

fn scanned(text: &str) -> usize {
    yaml_nesting::depth(text)
}

#[test]
fn the_scanner_counts_what_the_parser_nests() {
    let cases: &[(&str, usize)] = &[
        ("a: b\n", 1),
        ("plain text\n", 0),
        ("- - - x\n", 3),
        ("k:\n- a\n- b\nj: c\n", 2),
        ("k:\n- - a\n  - b\n", 3),
        ("[[[]]]\n", 3),
        ("{a: {b: {c: d}}}\n", 3),
        ("[a: [b: c]]\n", 4),
        ("[[a]: b]\n", 3),
        ("[a]: b\n", 2),
        ("? [a]\n: b\n", 2),
        ("k: |\n  [[[[ {{{{\n  ]]]\nj: x\n", 1),
        ("k: >-\n  [[[[\n", 1),
        ("k: '[[[['\n", 1),
        ("k: \"[[\\\"[[\"\n", 1),
        ("k: 'it''s [[['\n", 1),
        ("# [[[[\nk: v # [[[[\n", 1),
        ("k: a[[[[\n", 1),
        ("k: !tag [a]\n", 2),
        ("k: &a [b]\nj: *a\n", 2),
        ("k: [a, 'b, [c', \"d]\"]\n", 2),
        ("k: [a #comment [[[\n  , b]\n", 2),
    ];
    for (text, depth) in cases {
        assert_eq!(scanned(text), *depth, "{text:?}");
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(yaml_depth(&parsed), *depth, "parser disagrees on {text:?}");
    }
}

#[test]
fn text_that_only_looks_quoted_is_still_counted() {
    // `'` inside a plain scalar does not start a quote, in a block or in a flow: what
    // follows is structure, and must be counted.
    let deep = format!("{}{}", "[".repeat(80), "]".repeat(80));
    for text in [
        format!("k: abc\n  'x\nj: {deep}\n"),
        format!("k: [a 'b, {deep}]\n"),
        format!("k: [a\n 'b, {deep}]\n"),
        format!("k: x'y\nj: {deep}\n"),
        format!("k: !a' {deep}\n"),
        format!("k: [x:'y', {deep}]\n"),
    ] {
        assert!(scanned(&text) >= 80, "{text:?}: {}", scanned(&text));
        assert!(yaml_nesting::check(&text, MAX_DEPTH).is_err(), "{text:?}");
    }
}

/// Nested `depth` levels in several styles.
fn nested(style: usize, depth: usize) -> String {
    match style {
        0 => format!("{}x{}", "[".repeat(depth), "]".repeat(depth)),
        1 => format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth)),
        2 => format!("{}x\n", "- ".repeat(depth)),
        3 => (0..depth).fold(String::new(), |mut s, i| {
            s.push_str(&" ".repeat(i));
            s.push_str(if i + 1 == depth { "a: x\n" } else { "a:\n" });
            s
        }),
        _ => format!("{}x{}", "[a: ".repeat(depth / 2), "]".repeat(depth / 2)),
    }
}

#[test]
fn nesting_is_bounded_at_64_in_every_style() {
    for style in 0..5 {
        let ok = nested(style, MAX_DEPTH);
        assert_eq!(scanned(&ok), MAX_DEPTH, "style {style}");
        let shape = yaml_shape(&ok);
        assert!(shape.error.is_none(), "style {style}: {:?}", shape.error);
        let deep = nested(style, MAX_DEPTH + 2);
        let shape = yaml_shape(&deep);
        let error = shape.error.expect("refused");
        assert_eq!(
            error.reason, "nesting deeper than 64 levels",
            "style {style}"
        );
    }
}

#[test]
fn a_four_mebibyte_nest_is_refused_before_parsing() {
    let text = format!("kind: TrustPolicy\nclaims:\n  a: {}", "[".repeat(4 << 20));
    let error = yaml_shape(&text).error.unwrap();
    assert_eq!(error.to_string(), "nesting deeper than 64 levels");
    assert_eq!(error.line, Some(3));
    let block = format!("kind: TrustPolicy\nclaims:\n{}x\n", "- ".repeat(2 << 20));
    assert_eq!(
        yaml_shape(&block).error.unwrap().to_string(),
        "nesting deeper than 64 levels"
    );
}

#[test]
fn aliases_are_bounded_in_depth_and_in_expansion() {
    // Each alias nests the one before it: 10 levels of text, 100 once expanded.
    let mut text = String::from("a0: &a0 [[[[[[[[[[x]]]]]]]]]]\n");
    for i in 1..10 {
        text.push_str(&format!("a{i}: &a{i} [[[[[[[[[[*a{}]]]]]]]]]]\n", i - 1));
    }
    assert!(scanned(&text) <= 11);
    let error = yaml_shape(&text).error.unwrap();
    assert_eq!(error.reason, "nesting deeper than 64 levels");
    // Billion laughs: 9 levels of ten aliases each.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    let error = yaml_shape(&bomb).error.unwrap();
    assert!(
        error
            .reason
            .starts_with("aliases expand to too many values"),
        "{error}"
    );
    // Ordinary reuse is fine.
    let reuse = "a: &aud [x, y]\nb: *aud\nc: *aud\n";
    assert!(yaml_shape(reuse).error.is_none());
}

#[test]
fn duplicate_keys_are_refused_at_any_depth_with_path_and_line() {
    let cases: &[(&str, &str, usize)] = &[
        ("name: a\nname: b\n", "name", 2),
        (
            "claims:\n  repository_owner_id: \"1\"\n  repository_owner_id: {glob: \"**\"}\n",
            "claims.repository_owner_id",
            3,
        ),
        ("grant:\n  claims: {a: x, \"a\": y}\n", "grant.claims.a", 2),
        ("claims:\n  1: x\n  \"1\": y\n", "claims.1", 3),
        ("l:\n- a: 1\n- b: 1\n  b: 2\n", "l[1].b", 4),
        ("a: {b: {c: {d: 1, d: 2}}}\n", "a.b.c.d", 1),
        ("x: &m {k: 1}\ny: {<<: *m, <<: *m}\n", "y.<<", 2),
    ];
    for (text, path, line) in cases {
        let error = yaml_shape(text).error.unwrap_or_else(|| panic!("{text:?}"));
        assert_eq!(error.path.as_deref(), Some(*path), "{text:?}");
        assert_eq!(error.reason, "duplicate key", "{text:?}");
        assert_eq!(error.line, Some(*line), "{text:?}");
    }
    assert!(
        yaml_shape("a: {x: 1}\nb: {x: 1}\nl: [{x: 1}, {x: 2}]\n")
            .error
            .is_none()
    );
}

#[test]
fn the_walk_reads_kind_and_name() {
    let shape = yaml_shape("kind: TrustPolicy\nname: p\nclaims: {name: x, kind: y}\n");
    assert_eq!(shape.kind.as_deref(), Some("TrustPolicy"));
    assert_eq!(shape.name.as_deref(), Some("p"));
    assert_eq!(yaml_shape("kind: [x]\n").kind.as_deref(), Some(""));
    assert_eq!(yaml_shape("name: x\n").kind, None);
}

#[test]
fn json_bodies_refuse_duplicates_and_deep_nesting() {
    let body = br#"{"issuer": "gh", "claims": {"repository_owner_id": "1", "repository_owner_id": {"glob": "**"}}}"#;
    let error = json_body(body).unwrap_err();
    assert_eq!(
        error.to_string(),
        "claims.repository_owner_id: duplicate key"
    );
    let apply = br#"{"documents": [{}, {"grant": {"audience": "a", "audience": "b"}}]}"#;
    assert_eq!(
        json_body(apply).unwrap_err().path.as_deref(),
        Some("documents[1].grant.audience")
    );
    let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(json_body(ok.as_bytes()).is_ok());
    let deep = format!(
        "{}1{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        json_body(deep.as_bytes()).unwrap_err().to_string(),
        "nesting deeper than 64 levels"
    );
    // Brackets and escaped quotes inside strings are text.
    let text = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
    assert_eq!(
        json_body(text.as_bytes()).unwrap(),
        json!({"a": format!("{}\"{}", "[".repeat(100), "{".repeat(100))})
    );
    let syntax = json_body(b"{\"a\": }").unwrap_err();
    assert!(
        syntax.path.is_none() && syntax.reason.starts_with("expected value"),
        "{syntax}"
    );
    assert!(json_body(b"{} x").is_err());
}

#[test]
fn field_errors_name_the_path() {
    let missing =
        from_json::<TrustPolicyDoc>(json!({"name": "p", "issuer": "gh", "grant": {"scopes": []}}))
            .unwrap_err();
    assert_eq!(missing.to_string(), "grant.audience: missing field");
    let top = from_json::<TrustPolicyDoc>(json!({"issuer": "gh"})).unwrap_err();
    assert_eq!(top.to_string(), "name: missing field");
    let unknown = from_json::<TrustPolicyDoc>(
        json!({"name": "p", "issuer": "gh", "grant": {"audience": "a", "tll": "1h"}}),
    )
    .unwrap_err();
    assert_eq!(unknown.path.as_deref(), Some("grant.tll"));
    assert!(
        unknown.reason.starts_with("unknown field, expected one of"),
        "{unknown}"
    );
    let matcher = from_json::<TrustPolicyDoc>(
        json!({"name": "p", "issuer": "gh", "claims": {"ref": {"globb": "x"}}, "grant": {"audience": "a"}}),
    )
    .unwrap_err();
    assert_eq!(matcher.path.as_deref(), Some("claims.ref"));
    assert!(matcher.reason.contains("unknown matcher"), "{matcher}");
    let wrong = from_json::<IssuerDoc>(json!({"name": "i", "url": "u", "audiences": ["a", 1]}))
        .unwrap_err();
    assert_eq!(wrong.path.as_deref(), Some("audiences[1]"));

    let yaml =
        from_yaml::<TrustPolicyDoc>("name: p\nissuer: gh\ngrant:\n  scopes: [a]\n").unwrap_err();
    assert_eq!(yaml.to_string(), "grant.audience: missing field");
    assert_eq!(
        yaml.line,
        Some(4),
        "the line where the object that lacks it starts"
    );
    let yaml =
        from_yaml::<TrustPolicyDoc>("name: p\nissuer: gh\ngrant: {audience: a, ttl: soon}\n")
            .unwrap_err();
    assert_eq!(yaml.path.as_deref(), Some("grant.ttl"));
    assert!(!yaml.reason.starts_with("grant"), "{yaml}");
    let yaml =
        from_yaml::<TrustPolicyDoc>("name: p\nissuer: gh\nsubjekt: x\ngrant: {audience: a}\n")
            .unwrap_err();
    assert_eq!(yaml.path.as_deref(), Some("subjekt"));
    assert_eq!(yaml.line, Some(3));
}

/// Pieces of YAML that decide what is structure and what is text.
const PIECES: &[&str] = &[
    "[", "]", "{", "}", ",", ": ", ":", "- ", "-", "? ", "?", "'", "''", "\"", "\\\"", "\\", "#",
    " #", "|", ">", "|-", "!t ", "a", "b c", "x'y", " ", "  ", "\n", "\n  ", "\n    ", "\t", "---",
    "...", "k: ", "[a: ", "\r\n", "%", "@", "&a ", "!<x]> ", "- - ", "? - ", ": [",
];

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(proptest::sample::select(PIECES), 0..60).prop_map(|v| v.concat())
}

fn well_formed() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("x".to_owned()),
        Just("'a [b'".to_owned()),
        Just("\"c ] {\"".to_owned()),
    ];
    leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| {
                let pairs: Vec<String> = v
                    .iter()
                    .enumerate()
                    .map(|(i, x)| format!("k{i}: {x}"))
                    .collect();
                format!("{{{}}}", pairs.join(", "))
            }),
            (inner.clone(), inner).prop_map(|(k, v)| format!("[{k}: {v}]")),
        ]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[\\[\\]{}\"\\\\a-z ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(10, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\\[\\]]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Indents a flow value under block keys and sequence entries.
fn in_block(flow: &str, wrap: &[bool]) -> String {
    let mut text = String::new();
    for (i, seq) in wrap.iter().enumerate() {
        text.push_str(&" ".repeat(2 * i));
        text.push_str(if *seq { "-\n" } else { "k:\n" });
    }
    text.push_str(&" ".repeat(2 * wrap.len()));
    text.push_str(flow);
    text.push('\n');
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PARSE_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000), ..ProptestConfig::default() })]

    /// Whatever the parser reads, the scanner never counts less nesting than it builds.
    #[test]
    fn the_scanner_never_counts_less_than_the_parser(text in yamlish()) {
        if let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) {
            let parsed = yaml_depth(&value);
            let seen = scanned(&text);
            prop_assert!(seen >= parsed, "{text:?}: scanned {seen}, parsed {parsed}");
        }
    }

    /// And on well-formed documents it counts exactly.
    #[test]
    fn the_scanner_is_exact_on_documents(flow in well_formed(), wrap in prop::collection::vec(any::<bool>(), 0..4)) {
        let text = in_block(&flow, &wrap);
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        prop_assert_eq!(scanned(&text), yaml_depth(&value), "{:?}", text);
    }

    /// JSON without duplicates reads as serde_json reads it.
    #[test]
    fn json_bodies_read_as_serde_json_does(value in json_value()) {
        let text = serde_json::to_vec(&value).unwrap();
        let expected: Value = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(json_body(&text).unwrap(), expected);
    }
}
