//! What the broker publishes about itself: the discovery document (OpenID Connect
//! Discovery / RFC 8414) and its JWKS, each with a strong entity tag.
//!
//! Both are cacheable for `max_age`, the same period by which a new key's publication
//! precedes its first signature.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::exchange::GRANT_TYPE;
use crate::mint::{SigningKeys, etag_of};

/// A published document and its entity tag.
#[derive(Debug, Clone)]
pub struct Published {
    /// The JSON body.
    pub body: bytes::Bytes,
    /// Its strong entity tag.
    pub etag: String,
}

/// The broker's published metadata.
pub struct Metadata {
    issuer_url: String,
    keys: Arc<SigningKeys>,
    max_age: Duration,
}

impl Metadata {
    /// The metadata of the broker `issuer_url`.
    pub fn new(issuer_url: &str, keys: Arc<SigningKeys>, max_age: Duration) -> Self {
        Self {
            issuer_url: issuer_url.to_owned(),
            keys,
            max_age,
        }
    }

    /// How long relying parties may cache both documents.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The discovery document (the same body for both well-known names).
    pub fn discovery(&self) -> Published {
        let iss = &self.issuer_url;
        let algs = self.keys.current().algorithms();
        let document = json!({
            "issuer": iss,
            // OpenID Connect Discovery requires an authorization endpoint; this one exists
            // and refuses every request, because tokens are issued by exchange only.
            "authorization_endpoint": format!("{iss}/authorize"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "token_endpoint": format!("{iss}/token"),
            "introspection_endpoint": format!("{iss}/introspect"),
            "grant_types_supported": [GRANT_TYPE],
            "response_types_supported": ["token"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["bearer"],
            "scopes_supported": [],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id", "act"],
        });
        let body = bytes::Bytes::from(document.to_string());
        let etag = etag_of(&body);
        Published { body, etag }
    }

    /// The JWKS: every key that can still verify a live token, and the next key.
    pub fn jwks(&self) -> Published {
        let ring = self.keys.current();
        Published {
            body: ring.jwks.clone(),
            etag: ring.etag.clone(),
        }
    }
}
