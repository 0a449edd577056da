//! `/admin/v1/keys`: list, rotate, replace after a compromise.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::extract::{Reader, Writer};
use super::failure::AdminFailure;
use crate::http::request_id::RequestId;
use crate::mint::{KeyChange, SigningKeys};

type Answer = Result<HttpResponse, AdminFailure>;

/// `GET /admin/v1/keys`.
pub async fn list(_: Reader, keys: web::Data<SigningKeys>, id: RequestId) -> Answer {
    let list = keys
        .list()
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    Ok(HttpResponse::Ok().json(json!({ "keys": list })))
}

/// `POST /admin/v1/keys/rotate` and `/keys/replace`.
pub async fn change(
    writer: Writer,
    keys: web::Data<SigningKeys>,
    id: RequestId,
    change: KeyChange,
) -> Answer {
    let list = keys
        .change(change, writer.actor(&id))
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    Ok(HttpResponse::Ok().json(json!({ "keys": list })))
}
