//! Who may read `/metrics`.
//!
//! Its labels name every policy and issuer in force, which tells an outsider which policies
//! exist and what to aim a forged claim at; they are not for anyone who can reach the token
//! endpoint. So on the public listener `/metrics` needs a bearer: `metrics_token`, or an
//! admin credential that may read. With `metrics_listen` it is served on that address only
//! (meant to be reachable by the scraper alone), anonymously unless `metrics_token` is set.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};

use super::oauth_error::OAuthError;
use crate::broker::Broker;
use crate::config::Secret;

/// Where this `/metrics` is served and what it asks for.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// `metrics_token`.
    pub token: Option<Secret>,
    /// This is the public listener while `metrics_listen` serves `/metrics`: not found here.
    pub elsewhere: bool,
    /// This is the `metrics_listen` listener: open unless a token is set.
    pub internal: bool,
}

/// Registers `/metrics` alone (the `metrics_listen` server).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(super::health::metrics))
        .default_service(web::to(super::not_found));
}

/// `Ok` when `req` may read the metrics, else the error to answer.
pub fn check(req: &HttpRequest, broker: &Broker, access: &MetricsAccess) -> Result<(), OAuthError> {
    if access.elsewhere {
        return Err(OAuthError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ));
    }
    let bearer = super::bearer(req);
    let token_matches = match (&access.token, bearer) {
        (Some(token), Some(given)) => equal_secret(given, token.expose()),
        _ => false,
    };
    let open = access.internal && access.token.is_none();
    let admin = || {
        bearer.is_some()
            && crate::admin::authenticate(
                broker,
                bearer,
                crate::admin::Access::Read,
                crate::jose::unix_now(),
            )
            .is_ok()
    };
    if open || token_matches || admin() {
        return Ok(());
    }
    Err(OAuthError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "/metrics needs the metrics token or an admin credential",
    )
    .with_challenge("Bearer"))
}

/// Compares SHA-256 digests in constant time, so neither the content nor the length of the
/// token leaks through timing.
fn equal_secret(given: &str, secret: &str) -> bool {
    use aws_lc_rs::digest::{SHA256, digest};
    use subtle::ConstantTimeEq;
    let a = digest(&SHA256, given.as_bytes());
    let b = digest(&SHA256, secret.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::equal_secret;

    #[test]
    fn tokens_compare_exactly() {
        assert!(equal_secret(
            "metrics-token-0123456",
            "metrics-token-0123456"
        ));
        assert!(!equal_secret(
            "metrics-token-012345",
            "metrics-token-0123456"
        ));
        assert!(!equal_secret("", "metrics-token-0123456"));
    }
}
