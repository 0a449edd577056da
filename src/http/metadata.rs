//! Published metadata: OpenID discovery / RFC 8414, and the JWKS.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::broker::Broker;

/// How long clients may cache discovery and keys. Short, so a new key is seen well before it
/// signs (rotation publishes the next key ahead of use).
pub const MAX_AGE_SECS: u64 = 300;

/// The discovery document (same body for both well-known names).
pub fn discovery_document(broker: &Broker) -> Value {
    let iss = &broker.issuer_url;
    let alg = broker.keys.load().active.alg.as_str();
    json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/token"),
        "grant_types_supported": [super::token::GRANT_TYPE],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id", "act"],
    })
}

/// `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.
pub async fn discovery(broker: web::Data<Broker>) -> HttpResponse {
    cacheable(discovery_document(&broker))
}

/// `GET /.well-known/jwks.json` (and `/.well-known/jwks`).
pub async fn jwks(broker: web::Data<Broker>) -> HttpResponse {
    cacheable(broker.keys.load().jwks())
}

fn cacheable(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, format!("public, max-age={MAX_AGE_SECS}")))
        .json(body)
}
