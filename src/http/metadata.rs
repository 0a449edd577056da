//! Published metadata: OpenID discovery / RFC 8414, and the JWKS, with `Cache-Control:
//! max-age` and strong ETags for cheap revalidation.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::metadata::{Metadata, Published};

/// `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.
pub async fn discovery(req: HttpRequest, metadata: web::Data<Metadata>) -> HttpResponse {
    cacheable(&req, &metadata, metadata.discovery())
}

/// `GET /.well-known/jwks.json` (and `/.well-known/jwks`).
pub async fn jwks(req: HttpRequest, metadata: web::Data<Metadata>) -> HttpResponse {
    cacheable(&req, &metadata, metadata.jwks())
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

fn cacheable(req: &HttpRequest, metadata: &Metadata, published: Published) -> HttpResponse {
    let max_age = format!("public, max-age={}", metadata.max_age().as_secs());
    // If-None-Match uses weak comparison (RFC 9110 §13.1.2).
    let matches = req
        .headers()
        .get_all(IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == published.etag || v == "*");
    let mut response = match matches {
        true => HttpResponse::NotModified(),
        false => HttpResponse::Ok(),
    };
    response
        .insert_header((CACHE_CONTROL, max_age))
        .insert_header((ETAG, published.etag));
    if matches {
        return response.finish();
    }
    response
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(published.body)
}
