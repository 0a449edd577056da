//! Published metadata: OpenID discovery / RFC 8414, and the JWKS.
//!
//! Both are anonymous and cacheable for `jwks_max_age`, the same period by which a new key's
//! publication precedes its first signature, with strong ETags for cheap revalidation.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::broker::Broker;

/// The discovery document (same body for both well-known names).
pub fn discovery_document(broker: &Broker) -> Value {
    let iss = &broker.issuer_url;
    let algs = broker.keys.load().algorithms();
    json!({
        "issuer": iss,
        // OpenID Connect Discovery requires an authorization endpoint; this one exists and
        // refuses every request, because tokens are issued by exchange only.
        "authorization_endpoint": format!("{iss}/authorize"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/token"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "grant_types_supported": [super::token::GRANT_TYPE],
        "response_types_supported": ["token"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "scopes_supported": [],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id", "act"],
    })
}

/// `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.
pub async fn discovery(req: HttpRequest, broker: web::Data<Broker>) -> HttpResponse {
    let body = bytes::Bytes::from(discovery_document(&broker).to_string());
    let etag = super::etag_of(&body);
    cacheable(&req, &broker, body, &etag)
}

/// `GET /.well-known/jwks.json` (and `/.well-known/jwks`).
pub async fn jwks(req: HttpRequest, broker: web::Data<Broker>) -> HttpResponse {
    let ring = broker.keys.load();
    cacheable(&req, &broker, ring.jwks.clone(), &ring.etag)
}

/// `GET /authorize`: there is no interactive flow; say so in RFC 6749 terms.
pub async fn authorize(id: super::request_id::RequestId) -> HttpResponse {
    super::oauth_error::OAuthError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "unsupported_response_type",
        "this broker issues tokens only by token exchange at the token endpoint",
    )
    .response(&id.0)
}

fn cacheable(req: &HttpRequest, broker: &Broker, body: bytes::Bytes, etag: &str) -> HttpResponse {
    let max_age = format!("public, max-age={}", broker.jwks_max_age.as_secs());
    let matches = req
        .headers()
        .get_all(IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == etag || v == "*");
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((CACHE_CONTROL, max_age))
        .insert_header((ETAG, etag.to_owned()));
    if matches {
        return response.finish();
    }
    response
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(body)
}
