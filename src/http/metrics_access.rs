//! Who may read `/metrics`.
//!
//! Its labels name every policy and issuer in force, which tells an outsider which policies
//! exist and what to aim a forged claim at; they are not for anyone who can reach the token
//! endpoint. So on the public listener `/metrics` needs a bearer: `metrics_token`, or an
//! admin credential that may read. With `metrics_listen` it is served on that address only
//! (meant to be reachable by the scraper alone), anonymously unless `metrics_token` is set.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::oauth_error::OAuthError;
use crate::admin::{Access, Authenticator};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Where this `/metrics` is served and who may read it.
pub struct MetricsAccess {
    /// `metrics_token`.
    token: Option<Secret>,
    /// Admins with read access may read it too.
    admins: Arc<Authenticator>,
    place: Place,
}

/// Which listener serves this `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The public listener, which serves it to bearers of the token or admins.
    Public,
    /// The public listener while `metrics_listen` serves `/metrics`: not found here.
    Elsewhere,
    /// The `metrics_listen` listener: open unless a token is set.
    Internal,
}

/// Registers the `metrics_listen` server's routes: `/metrics`, and `/healthz` and `/readyz`
/// too, so that a load balancer's health checks reach the broker even while the public
/// listener is at its connection cap.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(super::health::healthz))
        .route("/readyz", web::get().to(super::health::readyz))
        .default_service(web::to(super::not_found));
}

/// Prometheus text exposition, to those [`MetricsAccess`] lets in.
pub async fn metrics(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    access: web::Data<MetricsAccess>,
    id: super::request_id::RequestId,
) -> HttpResponse {
    if let Err(refused) = access.check(&req) {
        return refused.response(&id.0);
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render())
}

impl MetricsAccess {
    /// Access to the `/metrics` served at `place`.
    pub fn new(token: Option<Secret>, admins: Arc<Authenticator>, place: Place) -> Self {
        Self {
            token,
            admins,
            place,
        }
    }

    /// `Ok` when `req` may read the metrics, else the error to answer.
    pub fn check(&self, req: &HttpRequest) -> Result<(), OAuthError> {
        if self.place == Place::Elsewhere {
            return Err(OAuthError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ));
        }
        let bearer = super::bearer(req);
        let open = self.place == Place::Internal && self.token.is_none();
        let token_matches = match (&self.token, bearer) {
            (Some(token), Some(given)) => token.matches(given),
            _ => false,
        };
        let admin = || {
            bearer.is_some()
                && (self.admins)
                    .admin(bearer, Access::Read, crate::jose::unix_now())
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
}
