//! `GET|POST /sts/exchange`: the octo-sts shape of the same exchange. `identity` names the
//! policy, `scope` (or `scopes`) the audience; the OIDC token is the bearer credential.
//! Parameters come from the query string, and for POST also from a form body.

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::body::{Params, is_form, read_limited};
use super::caller::Caller;
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::exchange::{ExchangeRequest, TokenExchange};

/// The handler.
pub async fn exchange(
    req: HttpRequest,
    payload: web::Payload,
    exchange: web::Data<TokenExchange>,
    id: RequestId,
) -> HttpResponse {
    match handle(&req, payload, &exchange, &id).await {
        Ok(token) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({ "token": token })),
        Err(e) => {
            let mut response = HttpResponse::build(e.status);
            response.insert_header((CACHE_CONTROL, "no-store"));
            if let Some(seconds) = e.retry_after {
                response.insert_header(("Retry-After", seconds.to_string()));
            }
            response.json(json!({ "error": e.error, "message": e.description, "request_id": id.0 }))
        }
    }
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    exchange: &TokenExchange,
    id: &RequestId,
) -> Result<String, OAuthError> {
    let caller = Caller::admit(req)?;
    let mut params = Params::parse(req.query_string().as_bytes())?;
    if is_form(req) {
        params.merge(Params::parse(&read_limited(req, payload).await?)?)?;
    }
    let token = super::bearer(req).ok_or_else(|| {
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
        // octo-sts names the target `OWNER/REPO`; a policy that grants broker tokens still
        // takes `scope` as its audience, as before.
        bare_github_target: true,
    };
    let issued = exchange
        .exchange(&request, &caller.context(id))
        .await
        .map_err(|e| OAuthError::from(&e))?;
    Ok(issued.access_token)
}
