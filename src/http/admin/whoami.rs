//! `GET /admin/v1/whoami`: who the bearer is and what it may do, so a client (the console)
//! can offer write controls only to those who may write. The API checks every request
//! anyway; this only saves an admin from buttons that would answer 403.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::extract::authenticate;
use super::failure::AdminFailure;
use crate::admin::Access;

/// `{"name", "access": "read" | "write"}`; 401 without a usable admin credential.
pub async fn whoami(req: HttpRequest) -> Result<HttpResponse, AdminFailure> {
    let reader = authenticate(&req, Access::Read)?;
    let access = match authenticate(&req, Access::Write) {
        Ok(_) => "write",
        Err(_) => "read",
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"name": reader.name, "access": access})))
}
