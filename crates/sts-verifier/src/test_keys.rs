//! Keys generated in the tests, signing tokens the way the broker does (with the JOSE core's
//! signing keys, which the broker itself uses).

use serde_json::{Value, json};
use sts_jose::sign::SigningKey;

use crate::Algorithm;

/// A fresh private key for one algorithm.
pub(crate) struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    key: SigningKey,
}

impl TestKey {
    pub fn generate(alg: Algorithm) -> Self {
        let (key, _) = SigningKey::generate(alg.jose()).unwrap();
        Self {
            alg,
            kid: key.kid().to_owned(),
            key,
        }
    }

    /// The public JWK, as the broker publishes it.
    pub fn jwk(&self) -> Value {
        serde_json::to_value(self.key.jwk()).unwrap()
    }

    /// A compact JWS with this header and these claims.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let b64 = |v: &Value| sts_jose::b64url(v.to_string().as_bytes());
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature = self.key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", sts_jose::b64url(&signature))
    }

    /// A token with the broker's header: `{alg, kid, typ: "at+jwt"}`.
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": "at+jwt"});
        self.token_with_header(&header, claims)
    }
}
