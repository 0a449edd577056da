//! `/admin/v1/issuers`, `/admin/v1/policies` and `/admin/v1/github-apps`: list, read, history, replace, delete, and
//! `/admin/v1/apply` for a whole set.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{IfMatch, Reader, Writer, authenticate, etag, json_bytes};
use super::failure::AdminFailure;
use crate::admin::{Access, Documents};
use crate::audit::Actor;
use crate::http::request_id::RequestId;
use crate::policy::Kind;

type Name = web::Path<String>;
type Answer = Result<HttpResponse, AdminFailure>;

/// `GET …/issuers`, `GET …/policies`.
pub async fn list(_: Reader, documents: web::Data<Documents>, id: RequestId, kind: Kind) -> Answer {
    let items = documents
        .list_documents(kind)
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// `GET …/{kind}/{name}`, with its `ETag`.
pub async fn get(
    _: Reader,
    documents: web::Data<Documents>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> Answer {
    let view = documents
        .get_document(kind, &name)
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(view.version)))
        .json(view.document))
}

/// `PUT …/{kind}/{name}`: 201 when it creates, 200 when it replaces.
#[allow(clippy::too_many_arguments)]
pub async fn put(
    req: HttpRequest,
    writer: Writer,
    IfMatch(precondition): IfMatch,
    payload: web::Payload,
    documents: web::Data<Documents>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> Answer {
    let body = json_document(&req, payload, &id).await?;
    let (view, created) = documents
        .put_document(kind, &name, body, &precondition, writer.actor(&id))
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    let status = match created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok(HttpResponse::build(status)
        .insert_header((header::ETAG, etag(view.version)))
        .json(view.document))
}

/// `DELETE …/{kind}/{name}`.
pub async fn delete(
    writer: Writer,
    IfMatch(precondition): IfMatch,
    documents: web::Data<Documents>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> Answer {
    documents
        .delete_document(kind, &name, &precondition, writer.actor(&id))
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET …/{kind}/{name}/history`.
pub async fn history(
    _: Reader,
    documents: web::Data<Documents>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> Answer {
    let versions = documents
        .document_history(kind, &name)
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    Ok(HttpResponse::Ok().json(json!({ "versions": versions })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    documents: Vec<Value>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /admin/v1/apply`: a dry run needs `admin:read`, an apply `admin:write`.
pub async fn apply(
    req: HttpRequest,
    payload: web::Payload,
    documents: web::Data<Documents>,
    id: RequestId,
) -> Answer {
    let body: ApplyBody = serde_json::from_value(json_document(&req, payload, &id).await?)
        .map_err(|e| AdminFailure::invalid(format!("invalid body: {e}"), &id))?;
    let access = match body.dry_run {
        true => Access::Read,
        false => Access::Write,
    };
    let who = authenticate(&req, access)?;
    let actor = Actor {
        name: &who.name,
        request_id: &id.0,
    };
    let report = documents
        .apply_documents(body.documents, body.prune, body.dry_run, actor)
        .await
        .map_err(|e| AdminFailure::admin(e, &id))?;
    Ok(HttpResponse::Ok().json(report))
}

/// A document body: JSON within the size limit, read as strictly as policy files are
/// (duplicate keys and deep nesting refused, with the path).
async fn json_document(
    req: &HttpRequest,
    payload: web::Payload,
    id: &RequestId,
) -> Result<Value, AdminFailure> {
    let bytes = json_bytes(req, payload, id).await?;
    crate::policy::parse::json_body(&bytes)
        .map_err(|e| AdminFailure::invalid(format!("body is not valid JSON: {e}"), id))
}
