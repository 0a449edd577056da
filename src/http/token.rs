//! `POST /token`: RFC 8693 token exchange.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::{HttpRequest, HttpResponse, web};

use super::body::{Params, is_form, read_limited};
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::broker::Broker;
use crate::exchange::{ExchangeRequest, RequestContext};

/// RFC 8693 grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The handler.
pub async fn exchange(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
    id: RequestId,
) -> HttpResponse {
    match handle(&req, payload, &broker, &id).await {
        Ok(response) => response,
        Err(e) => e.response(&id.0),
    }
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    broker: &Broker,
    id: &RequestId,
) -> Result<HttpResponse, OAuthError> {
    let client = broker.trusted_proxies.client_of(req);
    broker
        .check_client_rate(client.as_deref())
        .map_err(|wait| OAuthError::rate_limited(wait, "too many requests; retry later"))?;
    let body = read_limited(req, payload).await?;
    if !is_form(req) {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(&body)?;
    let (request, issued_type) = parse_request(&params)?;
    let ctx = RequestContext {
        request_id: id.0.clone(),
        client_addr: client,
        now: crate::jose::unix_now(),
    };
    let issued = broker
        .exchange(&request, &ctx)
        .await
        .map_err(|e| OAuthError::from(&e))?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token: &issued.access_token,
            issued_token_type: issued_type,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: &issued.scope,
        }))
}

/// RFC 8693 §2.2.1 success response (serialised directly, without a JSON tree).
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    issued_token_type: &'a str,
    token_type: &'a str,
    expires_in: i64,
    scope: &'a str,
}

/// Checks the RFC 8693 parameters; returns the request and the issued token type.
fn parse_request(params: &Params) -> Result<(ExchangeRequest, &'static str), OAuthError> {
    let grant_type = params.require("grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("only {GRANT_TYPE} is supported"),
        ));
    }
    let subject_token = params.require("subject_token")?;
    match params.require("subject_token_type")? {
        ID_TOKEN | JWT => {}
        _ => {
            return Err(OAuthError::invalid_request(
                "subject_token_type must be id_token or jwt",
            ));
        }
    }
    let issued_type = match params.get("requested_token_type") {
        None | Some(ACCESS_TOKEN) => ACCESS_TOKEN,
        Some(JWT) => JWT,
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "requested_token_type must be access_token or jwt",
            ));
        }
    };
    if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
        return Err(OAuthError::invalid_request(
            "actor tokens (delegation) are not supported",
        ));
    }
    let scopes = params.get("scope").map(parse_scope).transpose()?;
    let request = ExchangeRequest {
        subject_token: subject_token.to_owned(),
        audience: params.get("audience").map(str::to_owned),
        scopes,
        policy: params.get("policy").map(str::to_owned),
    };
    Ok((request, issued_type))
}

/// Space-separated scope tokens, duplicates dropped, order kept.
pub fn parse_scope(text: &str) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for s in text.split(' ').filter(|s| !s.is_empty()) {
        if !crate::policy::trust::is_scope_token(s) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "scope holds an invalid character",
            ));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    Ok(scopes)
}
