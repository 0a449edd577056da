//! `GET /healthz` (the process answers) and `GET /readyz` (see [`crate::readiness`]).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::readiness::{Readiness, ReadinessProbe};

/// Liveness.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
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
