//! The core against `jsonwebtoken::decode`, token by token.
//!
//! Thousands of generated tokens, many valid and most mutated (flipped bits and characters,
//! swapped and foreign segments, re-encoded headers, other algorithms, other keys), are
//! judged by both under the same pinned algorithm and key, with jsonwebtoken's claim checks
//! turned off (they are the callers' business here, and both sides leave them to callers).
//! They must agree, except where the core is deliberately stricter: [`STRICTER`] names each
//! such refusal, and any other disagreement, in either direction, fails the test.
//!
//! `PROPTEST_CASES=100000 cargo test --release -p sts-jose --test differential` for a long run.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use serde::Deserialize;
use serde_json::{Value, json};
use sts_jose::header::{self, HeaderError};
use sts_jose::jwk::VerifyKey;
use sts_jose::jws::{self, DecodeError};
use sts_jose::{Jwk, alg, b64url, b64url_decode};

/// The refusals where the core is stricter than `jsonwebtoken::decode`, by name. Each is a
/// decision, not an accident: see the core's `jws`, `json` and `header` modules.
const STRICTER: &[&str] = &[
    // RFC 7515 §5.2 / RFC 7519 §4: duplicate members (at any depth) are refused; serde keeps
    // the last one, so the verifier and a later reader could disagree on what was signed.
    "duplicate member",
    // RFC 7515 §4.1.11: a `crit` extension this code does not implement invalidates the token.
    "crit",
    // `enc` or `zip` in the header: an encrypted or compressed token dressed as a JWS.
    "enc or zip",
    // `cty: JWT`: a nested token, whose inner claims this key never signed.
    "nested cty",
    // `kid` empty or longer than 256 bytes.
    "kid shape",
];

/// The refusals where `jsonwebtoken::decode` is stricter than the core, by name. The core
/// leaves claim types to its callers (the broker's claim checks and sts-verifier's `Claims`
/// refuse each of these values); jsonwebtoken refuses them whatever its `Validation` says.
const JSONWEBTOKEN_STRICTER: &[&str] = &[
    // `sub`, `exp` or `nbf` holding an array or object: jsonwebtoken pre-parses these claims
    // in one pass, and a value of another shape is left unread, so the parse stops at it
    // ("expected `,` or `}`") and the token is refused even with every claim check off.
    "registered claim of another shape",
];

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

enum Private {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct PoolKey {
    jwk: Jwk,
    kid: String,
    private: Private,
}

impl PoolKey {
    fn new(n: usize, private: Private) -> Self {
        let kid = format!("k{n}");
        let jwk = match &private {
            Private::P256(p) | Private::P384(p) => {
                let point = p.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if len == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "x": b64url(&point[1..=len]),
                    "y": b64url(&point[1 + len..])})
            }
            Private::Rsa(p) => {
                let public = p.public_key();
                json!({"kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero())})
            }
            Private::Ed(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(p.public_key().as_ref())})
            }
        };
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        Self {
            jwk: Jwk::deserialize(&jwk).unwrap(),
            kid,
            private,
        }
    }

    /// The algorithms this key signs and verifies with.
    fn algorithms(&self) -> &'static [Algorithm] {
        match self.private {
            Private::P256(_) => &[Algorithm::ES256],
            Private::P384(_) => &[Algorithm::ES384],
            Private::Rsa(_) => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            Private::Ed(_) => &[Algorithm::EdDSA],
        }
    }

    fn sign(&self, alg: Algorithm, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.private {
            Private::P256(p) | Private::P384(p) => p.sign(&rng, message).unwrap().as_ref().to_vec(),
            Private::Ed(p) => p.sign(message).as_ref().to_vec(),
            Private::Rsa(p) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }
}

fn pool() -> &'static [PoolKey] {
    static POOL: OnceLock<Vec<PoolKey>> = OnceLock::new();
    POOL.get_or_init(|| {
        let rng = SystemRandom::new();
        let ec = |alg: &'static signature::EcdsaSigningAlgorithm| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap()
        };
        let ed = || {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
        };
        let rsa = || RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        [
            Private::P256(ec(&ECDSA_P256_SHA256_FIXED_SIGNING)),
            Private::P256(ec(&ECDSA_P256_SHA256_FIXED_SIGNING)),
            Private::P384(ec(&ECDSA_P384_SHA384_FIXED_SIGNING)),
            Private::Rsa(rsa()),
            Private::Rsa(rsa()),
            Private::Ed(ed()),
            Private::Ed(ed()),
        ]
        .into_iter()
        .enumerate()
        .map(|(n, p)| PoolKey::new(n, p))
        .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

/// A change to the honest header `{"alg", "typ": "JWT", "kid"}` (members written as text,
/// so duplicates can be written too).
#[derive(Debug, Clone)]
enum HeaderEdit {
    None,
    /// Another `alg` name, the signature unchanged.
    Alg(&'static str),
    DuplicateAlg(&'static str),
    Member(&'static str, Value),
    DuplicateMember,
    KidRemoved,
    Spaced,
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let names = [
        "none", "None", "HS256", "HS512", "RS256", "RS512", "PS256", "ES256", "ES384", "ES512",
        "EdDSA", "es256", "RSA-OAEP",
    ];
    let members: Vec<(&'static str, Value)> = vec![
        ("crit", json!(["exp"])),
        ("crit", json!([])),
        ("enc", json!("A128GCM")),
        ("zip", json!("DEF")),
        ("cty", json!("JWT")),
        ("cty", json!("jwt")),
        ("cty", json!("text/plain")),
        ("cty", json!(5)),
        ("kid", json!("")),
        ("kid", json!("k".repeat(300))),
        ("kid", json!(7)),
        ("typ", json!(["JWT"])),
        ("typ", json!("at+jwt")),
        ("jku", json!("https://evil.example/jwks")),
        ("jku", json!(5)),
        ("x5c", json!(["AAAA"])),
        ("b64", json!(false)),
        ("ext", json!({"a": {"b": 1}})),
    ];
    prop_oneof![
        14 => Just(HeaderEdit::None),
        2 => proptest::sample::select(names.to_vec()).prop_map(HeaderEdit::Alg),
        1 => proptest::sample::select(names.to_vec()).prop_map(HeaderEdit::DuplicateAlg),
        4 => proptest::sample::select(members).prop_map(|(k, v)| HeaderEdit::Member(k, v)),
        1 => Just(HeaderEdit::DuplicateMember),
        1 => Just(HeaderEdit::KidRemoved),
        1 => Just(HeaderEdit::Spaced),
    ]
}

fn header_text(edit: &HeaderEdit, alg_name: &str, kid: &str) -> String {
    let mut members: Vec<(String, String)> = vec![
        ("alg".into(), json!(alg_name).to_string()),
        ("typ".into(), "\"JWT\"".into()),
        ("kid".into(), json!(kid).to_string()),
    ];
    let mut separator = ",";
    match edit {
        HeaderEdit::None => {}
        HeaderEdit::Alg(name) => members[0].1 = json!(name).to_string(),
        HeaderEdit::DuplicateAlg(name) => members.push(("alg".into(), json!(name).to_string())),
        HeaderEdit::Member(key, value) => {
            members.retain(|(k, _)| k != key);
            members.push(((*key).into(), value.to_string()));
        }
        HeaderEdit::DuplicateMember => members.push(("typ".into(), "\"JWT\"".into())),
        HeaderEdit::KidRemoved => members.retain(|(k, _)| k != "kid"),
        HeaderEdit::Spaced => separator = " ,\n ",
    }
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    format!("{{{}}}", body.join(separator))
}

/// Small JSON values.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The payload, as text.
#[derive(Debug, Clone)]
enum Payload {
    Claims(BTreeMap<String, Value>),
    /// The claims with one member written twice.
    Duplicate(BTreeMap<String, Value>, Value),
    /// A nested object with a member written twice.
    NestedDuplicate,
    /// Valid JSON that is not an object.
    NotAnObject(Value),
}

fn claims() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let names = prop_oneof![
        "[a-c]{1,2}",
        proptest::sample::select(vec!["sub", "exp", "nbf", "aud", "iss", "jti"])
            .prop_map(str::to_owned),
    ];
    prop::collection::btree_map(names, json_value(), 0..5)
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        12 => claims().prop_map(Payload::Claims),
        2 => (claims(), json_value()).prop_map(|(c, v)| Payload::Duplicate(c, v)),
        1 => Just(Payload::NestedDuplicate),
        1 => json_value()
            .prop_filter("not an object", |v| !v.is_object())
            .prop_map(Payload::NotAnObject),
    ]
}

fn payload_text(payload: &Payload) -> String {
    match payload {
        Payload::Claims(c) => json!(c).to_string(),
        Payload::Duplicate(c, v) => {
            let mut text = json!(c).to_string();
            text.pop();
            let comma = if c.is_empty() { "" } else { "," };
            let name = c.keys().next().map_or("sub", String::as_str);
            format!("{text}{comma}{}:{v},{}:{v}}}", json!(name), json!(name))
        }
        Payload::NestedDuplicate => r#"{"sub":"s","k8s":{"ns":"a","ns":"b"}}"#.into(),
        Payload::NotAnObject(v) => v.to_string(),
    }
}

/// What happens to the signed token.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// One bit of one segment's decoded bytes.
    FlipBit(usize, Index, u8),
    /// One character of the token text.
    FlipChar(Index, char),
    SwapSegments(usize, usize),
    /// A segment of an honest token by another key.
    Foreign(usize, Index),
    Truncate(Index),
    Append(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        10 => Just(Mutation::None),
        3 => (0..3usize, any::<Index>(), 0..8u8).prop_map(|(s, i, b)| Mutation::FlipBit(s, i, b)),
        2 => (any::<Index>(), proptest::sample::select(vec!['A', 'a', '-', '_', '.', '=', '+', '0']))
            .prop_map(|(i, c)| Mutation::FlipChar(i, c)),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        2 => (0..3usize, any::<Index>()).prop_map(|(s, k)| Mutation::Foreign(s, k)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => proptest::sample::select(vec![".", ".x", "=", ".e30.e30", " "]).prop_map(Mutation::Append),
    ]
}

/// Which key and algorithm the verification pins.
#[derive(Debug, Clone)]
enum Pin {
    /// The signer's key and algorithm.
    Honest,
    /// Another key that serves the signer's algorithm family.
    OtherKey(Index),
    /// Any asymmetric algorithm, with a key that serves it.
    Any(Index, Index),
}

fn pin() -> impl Strategy<Value = Pin> {
    prop_oneof![
        6 => Just(Pin::Honest),
        1 => any::<Index>().prop_map(Pin::OtherKey),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, k)| Pin::Any(a, k)),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    signer: Index,
    alg: Index,
    header: HeaderEdit,
    payload: Payload,
    mutation: Mutation,
    pin: Pin,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<Index>(),
        any::<Index>(),
        header_edit(),
        payload(),
        mutation(),
        pin(),
    )
        .prop_map(|(signer, alg, header, payload, mutation, pin)| Case {
            signer,
            alg,
            header,
            payload,
            mutation,
            pin,
        })
}

fn honest_token(key: &PoolKey, alg: Algorithm, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let signature = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64url(&signature))
}

fn mutate(token: String, mutation: &Mutation, foreign: &str) -> String {
    let segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    let join = |s: Vec<String>| s.join(".");
    match mutation {
        Mutation::None => token,
        Mutation::FlipBit(seg, i, bit) => {
            let mut s = segments;
            let mut bytes = b64url_decode(&s[*seg]).unwrap();
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            s[*seg] = b64url(&bytes);
            join(s)
        }
        Mutation::FlipChar(i, c) => {
            let mut chars: Vec<char> = token.chars().collect();
            let at = i.index(chars.len());
            chars[at] = *c;
            chars.into_iter().collect()
        }
        Mutation::SwapSegments(a, b) => {
            let mut s = segments;
            s.swap(*a, *b);
            join(s)
        }
        Mutation::Foreign(seg, _) => {
            let mut s = segments;
            s[*seg] = foreign.split('.').nth(*seg).unwrap().to_owned();
            join(s)
        }
        Mutation::Truncate(i) => token[..i.index(token.len())].to_owned(),
        Mutation::Append(tail) => format!("{token}{tail}"),
    }
}

// ---------------------------------------------------------------------------------------
// The two judges
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum Refusal {
    Decode(DecodeError),
    Header(HeaderError),
    Signature,
}

/// What a caller of the core does: decode, apply the header rules with the one pinned
/// algorithm, verify with the one key.
fn core(token: &str, pinned: Algorithm, key: &VerifyKey) -> Result<(), Refusal> {
    let jws = jws::decode(token).map_err(Refusal::Decode)?;
    let header = header::check(&jws.header, &[pinned]).map_err(Refusal::Header)?;
    assert_eq!(header.alg, key.alg());
    match key.verify(jws.signing_input.as_bytes(), &jws.signature) {
        true => Ok(()),
        false => Err(Refusal::Signature),
    }
}

fn jsonwebtoken(token: &str, pinned: Algorithm, jwk: &Jwk) -> Result<(), String> {
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(pinned);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

/// The name in [`STRICTER`] of a refusal, if it is one of the deliberate ones.
fn stricter(refusal: &Refusal) -> Option<&'static str> {
    Some(match refusal {
        Refusal::Decode(DecodeError::DuplicateKey) => "duplicate member",
        Refusal::Header(HeaderError::Critical) => "crit",
        Refusal::Header(HeaderError::Encrypted) => "enc or zip",
        Refusal::Header(HeaderError::Nested) => "nested cty",
        Refusal::Header(HeaderError::Kid) => "kid shape",
        _ => return None,
    })
}

/// The name in [`JSONWEBTOKEN_STRICTER`] of a token jsonwebtoken refuses and the core accepts.
fn jsonwebtoken_stricter(token: &str) -> Option<&'static str> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
    ["sub", "exp", "nbf"]
        .iter()
        .any(|name| {
            claims
                .get(name)
                .is_some_and(|v| v.is_array() || v.is_object())
        })
        .then_some("registered claim of another shape")
}

#[derive(Default, Debug)]
struct Tally {
    both_accept: usize,
    both_refuse: usize,
    stricter: BTreeMap<&'static str, usize>,
    jsonwebtoken_stricter: BTreeMap<&'static str, usize>,
}

#[test]
fn the_core_agrees_with_jsonwebtoken_except_where_listed() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let tally = std::cell::RefCell::new(Tally::default());
    let keys = pool();
    runner
        .run(&case(), |case| {
            let signer = &keys[case.signer.index(keys.len())];
            let algs = signer.algorithms();
            let alg = algs[case.alg.index(algs.len())];
            let header = header_text(&case.header, alg::name(alg), &signer.kid);
            let token = honest_token(signer, alg, &header, &payload_text(&case.payload));
            let foreign = match &case.mutation {
                Mutation::Foreign(_, k) => {
                    let other = &keys[k.index(keys.len())];
                    let other_alg = other.algorithms()[0];
                    let h = header_text(&HeaderEdit::None, alg::name(other_alg), &other.kid);
                    honest_token(other, other_alg, &h, r#"{"sub":"admin"}"#)
                }
                _ => String::new(),
            };
            let token = mutate(token, &case.mutation, &foreign);
            let (pinned, verifier) = match &case.pin {
                Pin::Honest => (alg, signer),
                Pin::OtherKey(k) => {
                    let same: Vec<&PoolKey> = keys
                        .iter()
                        .filter(|o| o.algorithms().contains(&alg))
                        .collect();
                    (alg, same[k.index(same.len())])
                }
                Pin::Any(a, k) => {
                    let pinned = alg::ASYMMETRIC[a.index(alg::ASYMMETRIC.len())];
                    let serving: Vec<&PoolKey> = keys
                        .iter()
                        .filter(|o| o.algorithms().contains(&pinned))
                        .collect();
                    (pinned, serving[k.index(serving.len())])
                }
            };
            let key = VerifyKey::from_jwk(&verifier.jwk, pinned).expect("a key for the pin");
            let ours = core(&token, pinned, &key);
            let theirs = jsonwebtoken(&token, pinned, &verifier.jwk);
            let mut tally = tally.borrow_mut();
            match (&ours, &theirs) {
                (Ok(()), Ok(())) => tally.both_accept += 1,
                (Err(_), Err(_)) => tally.both_refuse += 1,
                (Err(refusal), Ok(())) => match stricter(refusal) {
                    Some(name) => *tally.stricter.entry(name).or_default() += 1,
                    None => {
                        return Err(TestCaseError::fail(format!(
                            "the core refuses ({refusal:?}) what jsonwebtoken accepts: {token}"
                        )));
                    }
                },
                (Ok(()), Err(e)) => match jsonwebtoken_stricter(&token) {
                    Some(name) => *tally.jsonwebtoken_stricter.entry(name).or_default() += 1,
                    None => {
                        return Err(TestCaseError::fail(format!(
                            "the core accepts what jsonwebtoken refuses ({e}): {token}"
                        )));
                    }
                },
            }
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    println!("{cases} cases: {tally:?}");
    assert!(
        tally.stricter.keys().all(|name| STRICTER.contains(name)),
        "{tally:?}"
    );
    if cases >= 1000 {
        // Not vacuous: many honest tokens pass both, and every listed difference occurred.
        assert!(tally.both_accept * 10 >= cases as usize, "{tally:?}");
        assert!(tally.both_refuse * 10 >= cases as usize, "{tally:?}");
        for name in STRICTER {
            assert!(
                tally.stricter.contains_key(name),
                "{name} never seen: {tally:?}"
            );
        }
        for name in JSONWEBTOKEN_STRICTER {
            let seen = tally.jsonwebtoken_stricter.contains_key(name);
            assert!(seen, "{name} never seen: {tally:?}");
        }
    }
}
