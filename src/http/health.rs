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

/// Prometheus text exposition.
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
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
