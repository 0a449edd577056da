//! `GET|POST /sts/exchange`: the octo-sts shape of the same exchange. `identity` names the
//! policy, `scope` (or `scopes`) the audience; the OIDC token is the bearer credential.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::body::Params;
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::broker::Broker;
use crate::exchange::{ExchangeRequest, RequestContext};

/// The handler.
pub async fn exchange(req: HttpRequest, broker: web::Data<Broker>, id: RequestId) -> HttpResponse {
    match handle(&req, &broker, &id).await {
        Ok(token) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({ "token": token })),
        Err(e) => HttpResponse::build(e.status)
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({ "error": e.error, "message": e.description, "request_id": id.0 })),
    }
}

async fn handle(req: &HttpRequest, broker: &Broker, id: &RequestId) -> Result<String, OAuthError> {
    let params = Params::parse(req.query_string().as_bytes())?;
    let token = bearer(req).ok_or_else(|| {
        OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "an OIDC token is required as the Authorization bearer",
        )
    })?;
    let audience = match (params.get("scope"), params.get("scopes")) {
        (Some(a), None) | (None, Some(a)) => Some(a.to_owned()),
        (Some(a), Some(b)) if a == b => Some(a.to_owned()),
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("scope and scopes disagree")),
        (None, None) => None,
    };
    let request = ExchangeRequest {
        subject_token: token.to_owned(),
        audience,
        scopes: None,
        policy: params.get("identity").map(str::to_owned),
    };
    let ctx = RequestContext {
        request_id: id.0.clone(),
        client_addr: req.peer_addr().map(|a| a.ip().to_string()),
        now: crate::jose::unix_now(),
    };
    let issued = broker
        .exchange(&request, &ctx)
        .await
        .map_err(|e| OAuthError::from(&e))?;
    Ok(issued.access_token)
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
