//! Secret values (the admin token, the key-encryption key's text, database passwords): they
//! never reach a log through `Debug`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A secret value: printed as `***` by `Debug` so it cannot reach a log by accident.
#[derive(Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret. Compares SHA-256 digests in constant time, so neither
    /// the content nor the length of the secret leaks through timing.
    pub fn matches(&self, given: &str) -> bool {
        use aws_lc_rs::digest::{SHA256, digest};
        use subtle::ConstantTimeEq;
        let a = digest(&SHA256, given.as_bytes());
        let b = digest(&SHA256, self.0.as_bytes());
        a.as_ref().ct_eq(b.as_ref()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar_text(d).map(Secret)
    }
}

/// Any scalar as its text. Environment values arrive typed (`0` is a number, `true` a
/// boolean), so a text setting must take them: `STS_BROKER_ADMIN_TOKEN=1234…` is a token.
pub fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Str(String),
        Int(i64),
        UInt(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::UInt(u) => u.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        let secret = Secret::new("correct horse battery");
        assert!(secret.matches("correct horse battery"));
        assert!(!secret.matches("correct horse batterY"));
        assert!(!secret.matches("correct horse batter"));
        assert!(!secret.matches(""));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let shown = format!("{:?}", Secret::new("super-secret-admin-token"));
        assert!(!shown.contains("super-secret"), "{shown}");
    }
}
