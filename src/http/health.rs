//! `GET /healthz` (the process answers), `GET /readyz` (see [`crate::readiness`]) and
//! `GET /metrics`.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::metrics::Metrics;
use crate::readiness::{Readiness, ReadinessProbe};

/// Liveness.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Prometheus text exposition, to those [`super::metrics_access`] lets in.
pub async fn metrics(
    req: actix_web::HttpRequest,
    metrics: web::Data<Metrics>,
    access: web::Data<super::metrics_access::MetricsAccess>,
    id: super::request_id::RequestId,
) -> HttpResponse {
    if let Err(refused) = access.check(&req) {
        return refused.response(&id.0);
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.render())
}

/// Readiness.
pub async fn readyz(probe: web::Data<ReadinessProbe>) -> HttpResponse {
    match probe.check().await {
        Readiness::Ready { signing_key } => {
            HttpResponse::Ok().json(json!({"status": "ready", "signing_key": signing_key}))
        }
        Readiness::DatabaseDown => HttpResponse::Ok()
            .json(json!({"status": "degraded", "database": "down", "audit": "journaled"})),
        Readiness::AuditDown => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "audit": "cannot commit"})),
    }
}
