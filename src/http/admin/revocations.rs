//! `/admin/v1/tokens/…/revoke` and `/admin/v1/revocations`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{OptionalJson, Reader, Writer};
use super::failure::AdminFailure;
use crate::http::request_id::RequestId;
use crate::revocation::{Revocations, RevokeRequest};
use crate::storage::StoredRevocation;
use crate::time::rfc3339;

type Answer = Result<HttpResponse, AdminFailure>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<String>,
}

/// `POST /admin/v1/tokens/{jti}/revoke` (body optional: `{"reason"}`).
pub async fn revoke_jti(
    writer: Writer,
    OptionalJson(body): OptionalJson<ReasonBody>,
    revocations: web::Data<Revocations>,
    id: RequestId,
    jti: web::Path<String>,
) -> Answer {
    let rule = revocations
        .revoke_jti(&jti, body.reason, writer.actor(&id))
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    Ok(HttpResponse::Ok().json(rule_json(&rule)))
}

/// `POST /admin/v1/tokens/revoke`: by policy and/or subject.
pub async fn revoke_matching(
    writer: Writer,
    OptionalJson(body): OptionalJson<RevokeRequest>,
    revocations: web::Data<Revocations>,
    id: RequestId,
) -> Answer {
    let rule = revocations
        .revoke_matching(body, writer.actor(&id))
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    Ok(HttpResponse::Ok().json(rule_json(&rule)))
}

/// `GET /admin/v1/revocations`.
pub async fn list(_: Reader, revocations: web::Data<Revocations>) -> HttpResponse {
    let list: Vec<Value> = revocations.list().iter().map(rule_json).collect();
    HttpResponse::Ok().json(json!({ "revocations": list }))
}

fn rule_json(r: &StoredRevocation) -> Value {
    json!({
        "jti": r.jti,
        "policy": r.policy,
        "subject": r.subject,
        "issued_since": rfc3339(r.issued_since),
        "issued_until": rfc3339(r.issued_until),
        "expires_at": rfc3339(r.expires_at),
        "created_at": rfc3339(r.created_at),
        "created_by": r.created_by,
        "reason": r.reason,
    })
}
