//! `GET /healthz` (the process answers) and `GET /readyz` (database and keys ready).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::broker::Broker;

/// Liveness.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Prometheus text exposition, to those [`super::metrics_access`] lets in.
pub async fn metrics(
    req: actix_web::HttpRequest,
    broker: web::Data<Broker>,
    access: web::Data<super::metrics_access::MetricsAccess>,
    id: super::request_id::RequestId,
) -> HttpResponse {
    if let Err(refused) = super::metrics_access::check(&req, &broker, &access) {
        return refused.response(&id.0);
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(broker.metrics.render())
}

/// Readiness: the broker's own database answers and a signing key is loaded. Upstream
/// issuers are not part of it: one issuer being down must not take every replica out.
pub async fn readyz(broker: web::Data<Broker>) -> HttpResponse {
    match broker.store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .json(json!({"status": "ready", "signing_key": broker.keys.load().active.kid})),
        Err(e) if broker.audit.covers_outage() => {
            tracing::warn!(error = %e, "readiness: database unavailable; audit records are spooled");
            HttpResponse::Ok()
                .json(json!({"status": "degraded", "database": "down", "audit": "spooled"}))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unavailable");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "unavailable", "database": "down"}))
        }
    }
}
