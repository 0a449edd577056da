//! HTTP routes: thin adapters from requests to the domain and back.

pub mod admin;
pub mod body;
pub mod body_deadline;
mod caller;
pub mod client_addr;
pub mod connection_limits;
pub mod connections;
mod console;
mod health;
mod introspect;
pub mod listener;
mod metadata;
pub mod metrics_access;
pub mod next_head;
pub mod oauth_error;
pub mod request_id;
pub mod shutdown;
mod sts_exchange;
pub mod token;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use oauth_error::OAuthError;
use request_id::RequestId;

/// Registers every public route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/token")
            .route(web::post().to(token::exchange))
            .default_service(web::to(|id: RequestId| method_not_allowed(id, "POST"))),
    )
    .service(
        web::resource("/sts/exchange")
            .route(web::get().to(sts_exchange::exchange))
            .route(web::post().to(sts_exchange::exchange))
            .default_service(web::to(|id: RequestId| method_not_allowed(id, "GET, POST"))),
    )
    .route(
        "/.well-known/openid-configuration",
        web::get().to(metadata::discovery),
    )
    .route(
        "/.well-known/oauth-authorization-server",
        web::get().to(metadata::discovery),
    )
    .route("/.well-known/jwks.json", web::get().to(metadata::jwks))
    .route("/.well-known/jwks", web::get().to(metadata::jwks))
    .route("/jwks", web::get().to(metadata::jwks))
    .route("/authorize", web::get().to(metadata::authorize))
    .service(
        web::resource("/introspect")
            .route(web::post().to(introspect::introspect))
            .default_service(web::to(|id: RequestId| method_not_allowed(id, "POST"))),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(metrics_access::metrics))
    .configure(admin::routes)
    .configure(console::routes);
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(req: &actix_web::HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

async fn method_not_allowed(id: RequestId, allow: &'static str) -> HttpResponse {
    use actix_web::http::header::{ALLOW, HeaderValue};
    let mut response = OAuthError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method not allowed",
    )
    .response(&id.0);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// JSON 404 for every unknown path.
pub async fn not_found(id: RequestId) -> HttpResponse {
    OAuthError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").response(&id.0)
}
