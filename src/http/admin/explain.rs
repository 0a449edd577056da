//! `POST /admin/v1/explain`: how an exchange of this token and request would be decided.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::extract::Reader;
use super::failure::AdminFailure;
use crate::exchange::{ExchangeRequest, TokenExchange};
use crate::http::request_id::RequestId;
use crate::http::token::{check_subject_token_type, parse_scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    subject_token: String,
    /// Checked as `/token` checks it.
    subject_token_type: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    policy: Option<String>,
}

/// The handler.
pub async fn explain(
    _: Reader,
    body: web::Json<ExplainBody>,
    exchange: web::Data<TokenExchange>,
    id: RequestId,
) -> Result<HttpResponse, AdminFailure> {
    let body = body.into_inner();
    if let Some(kind) = &body.subject_token_type {
        check_subject_token_type(kind).map_err(|e| AdminFailure::oauth(e, &id))?;
    }
    let scopes = body
        .scope
        .as_deref()
        .map(parse_scope)
        .transpose()
        .map_err(|e| AdminFailure::oauth(e, &id))?;
    let request = ExchangeRequest {
        subject_token: body.subject_token,
        audience: body.audience,
        scopes,
        policy: body.policy,
        bare_github_target: false,
    };
    let explanation = exchange.explain(&request, crate::jose::unix_now()).await;
    Ok(HttpResponse::Ok().json(explanation))
}
