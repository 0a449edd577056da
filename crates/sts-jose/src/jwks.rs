//! A JWKS document: the usable keys it publishes, and which one a token names.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use serde_json::Value;

use crate::jwk::VerifyKey;

/// A JWKS with more keys than this is refused (no issuer publishes hundreds).
pub const MAX_KEYS: usize = 64;

/// Why a document is not a usable key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not an object with a `keys` array.
    #[error("the JWKS has no keys array")]
    NotAJwks,
    /// More than [`MAX_KEYS`] entries.
    #[error("the JWKS has more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// Nothing in it verifies any allowed algorithm.
    #[error("the JWKS has no usable signing key")]
    NoUsableKey,
}

/// The usable keys of one JWKS document.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    /// JWKs that gave at least one key (for the no-`kid` rule).
    signing_jwks: usize,
    /// `kid`s that more than one entry publishes.
    duplicate_kids: Vec<String>,
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// This key.
    Found(&'a VerifyKey),
    /// No key has this `kid` (or, without one, none serves the algorithm).
    UnknownKid,
    /// Keys have this `kid`, none for this algorithm.
    WrongAlgorithm,
    /// No `kid`, and several keys could apply: guessing would let the token choose.
    Ambiguous,
    /// The JWKS publishes this `kid` more than once: which key it names is ambiguous, so
    /// it names none (not first-wins, which an attacker who can add one entry would love).
    DuplicateKid,
}

impl KeySet {
    /// Reads a JWKS document, keeping keys for `allowed` algorithms. Entries that cannot be
    /// used (encryption keys, other types, unparsable ones) are skipped; a set with no usable
    /// key is an error, so an empty set is never cached.
    pub fn from_jwks(doc: &Value, allowed: &[Algorithm]) -> Result<Self, JwksError> {
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAJwks)?;
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys = Vec::new();
        let mut signing_jwks = 0;
        let mut kids: Vec<&str> = Vec::new();
        let mut duplicate_kids = Vec::new();
        for entry in entries {
            if let Some(kid) = entry.get("kid").and_then(Value::as_str) {
                if kids.contains(&kid) && !duplicate_kids.iter().any(|d| d == kid) {
                    duplicate_kids.push(kid.to_owned());
                }
                kids.push(kid);
            }
            let Ok(jwk) = Jwk::deserialize(entry) else {
                continue;
            };
            let before = keys.len();
            keys.extend(allowed.iter().filter_map(|&a| VerifyKey::from_jwk(&jwk, a)));
            signing_jwks += usize::from(keys.len() > before);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self {
            keys,
            signing_jwks,
            duplicate_kids,
        })
    }

    /// The key for a token's `alg` and `kid`. Without a `kid`, only a set with exactly one
    /// signing JWK is trusted to mean that key.
    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Lookup<'_> {
        match kid {
            Some(kid) if self.duplicate_kids.iter().any(|d| d == kid) => Lookup::DuplicateKid,
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Lookup::UnknownKid;
                }
                named
                    .find(|k| k.alg() == alg)
                    .map_or(Lookup::WrongAlgorithm, Lookup::Found)
            }
            None if self.signing_jwks > 1 => Lookup::Ambiguous,
            None => match self.keys.iter().find(|k| k.alg() == alg) {
                Some(k) => Lookup::Found(k),
                None => Lookup::UnknownKid,
            },
        }
    }

    /// Is there a key for this `alg` and `kid`?
    pub fn has(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        matches!(self.find(alg, kid), Lookup::Found(_))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sign::SigningKey;

    const ALL: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

    fn jwk_of(key: &SigningKey) -> Value {
        serde_json::to_value(key.jwk()).unwrap()
    }

    #[test]
    fn lookups() {
        let (es, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let (ed, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let one = KeySet::from_jwks(
            &json!({"keys": [jwk_of(&es), {"kty": "oct", "k": "eA"}]}),
            &ALL,
        )
        .unwrap();
        assert!(one.has(Algorithm::ES256, Some(es.kid())));
        assert!(
            one.has(Algorithm::ES256, None),
            "one signing key: no kid needed"
        );
        assert!(matches!(
            one.find(Algorithm::EdDSA, Some(es.kid())),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            one.find(Algorithm::ES256, Some("other")),
            Lookup::UnknownKid
        ));
        let two = KeySet::from_jwks(&json!({"keys": [jwk_of(&es), jwk_of(&ed)]}), &ALL).unwrap();
        assert!(matches!(
            two.find(Algorithm::ES256, None),
            Lookup::Ambiguous
        ));
        assert!(two.has(Algorithm::EdDSA, Some(ed.kid())));
    }

    #[test]
    fn a_kid_published_twice_names_no_key() {
        let (a, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let (b, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let mut impostor = jwk_of(&b);
        impostor["kid"] = json!(a.kid());
        for keys in [
            json!([jwk_of(&a), impostor.clone(), jwk_of(&b)]),
            json!([impostor.clone(), jwk_of(&a), jwk_of(&b)]),
            json!([jwk_of(&a), jwk_of(&a), jwk_of(&b)]),
            // Even when the second entry is not a key this code can use.
            json!([jwk_of(&a), {"kty": "oct", "kid": a.kid(), "k": "eA"}, jwk_of(&b)]),
        ] {
            let set = KeySet::from_jwks(&json!({ "keys": keys }), &ALL).unwrap();
            assert!(matches!(
                set.find(Algorithm::ES256, Some(a.kid())),
                Lookup::DuplicateKid
            ));
            assert!(
                set.has(Algorithm::ES256, Some(b.kid())),
                "other kids still serve"
            );
        }
    }

    #[test]
    fn unusable_documents_are_errors() {
        let (ed, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let rows = [
            (json!({}), JwksError::NotAJwks),
            (json!([1, 2]), JwksError::NotAJwks),
            (json!({"keys": "nope"}), JwksError::NotAJwks),
            (json!({"keys": []}), JwksError::NoUsableKey),
            (
                json!({"keys": [{"kty": "oct", "k": "eA"}, 5, "x"]}),
                JwksError::NoUsableKey,
            ),
            (
                json!({"keys": vec![jwk_of(&ed); MAX_KEYS + 1]}),
                JwksError::TooManyKeys,
            ),
        ];
        for (doc, expected) in rows {
            assert_eq!(
                KeySet::from_jwks(&doc, &ALL).unwrap_err(),
                expected,
                "{doc}"
            );
        }
        let only_es = [Algorithm::ES256];
        assert_eq!(
            KeySet::from_jwks(&json!({"keys": [jwk_of(&ed)]}), &only_es).unwrap_err(),
            JwksError::NoUsableKey,
            "keys for algorithms not allowed are not kept"
        );
    }
}
