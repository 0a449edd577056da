//! `POST /admin/v1/policies/preview`: what a candidate set of documents would change in the
//! recorded decisions of a period. Needs `admin:read`: nothing is stored.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Reader, json_bytes};
use super::failure::AdminFailure;
use crate::admin::Documents;
use crate::http::request_id::RequestId;
use crate::preview::{Previews, Scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    documents: Vec<Value>,
    since: String,
    limit: Option<u64>,
}

/// The handler.
pub async fn preview(
    _: Reader,
    req: HttpRequest,
    payload: web::Payload,
    documents: web::Data<Documents>,
    previews: web::Data<Previews>,
    id: RequestId,
) -> Result<HttpResponse, AdminFailure> {
    let bytes = json_bytes(&req, payload, &id).await?;
    let body = crate::policy::parse::json_body(&bytes)
        .map_err(|e| AdminFailure::invalid(format!("body is not valid JSON: {e}"), &id))?;
    let body: PreviewBody = serde_path_to_error::deserialize(body)
        .map_err(|e| AdminFailure::invalid(format!("invalid body: {e}"), &id))?;
    let scope = Scope::parse(&body.since, body.limit, crate::jose::unix_now())
        .map_err(|m| AdminFailure::invalid(m, &id))?;
    let candidate = documents
        .candidate(body.documents)
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    let impact = previews
        .run(documents.current(), Arc::new(candidate), &scope)
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    Ok(HttpResponse::Ok().json(impact))
}
