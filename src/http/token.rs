//! `POST /token`: RFC 8693 token exchange.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::{HttpRequest, HttpResponse, web};

use super::body::{Params, is_form, read_limited};
use super::caller::Caller;
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::exchange::{ExchangeRequest, GRANT_TYPE, TokenExchange};

const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The handler.
pub async fn exchange(
    req: HttpRequest,
    payload: web::Payload,
    exchange: web::Data<TokenExchange>,
    id: RequestId,
) -> HttpResponse {
    match handle(&req, payload, &exchange, &id).await {
        Ok(response) => response,
        Err(e) => e.response(&id.0),
    }
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    exchange: &TokenExchange,
    id: &RequestId,
) -> Result<HttpResponse, OAuthError> {
    let caller = Caller::admit(req)?;
    let body = read_limited(req, payload).await?;
    if !is_form(req) {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(&body)?;
    let (request, issued_type) = parse_request(&params)?;
    let issued = exchange
        .exchange(&request, &caller.context(id))
        .await
        .map_err(|e| OAuthError::from(&e))?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token: &issued.access_token,
            // A GitHub token is not a JWT, whatever was asked for.
            issued_token_type: if issued.github {
                ACCESS_TOKEN
            } else {
                issued_type
            },
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
    check_subject_token_type(params.require("subject_token_type")?)?;
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
        bare_github_target: false,
    };
    Ok((request, issued_type))
}

/// RFC 8693 §2.1: the subject token types this broker exchanges (an OIDC ID token, or a
/// JWT).
pub fn check_subject_token_type(kind: &str) -> Result<(), OAuthError> {
    match kind {
        ID_TOKEN | JWT => Ok(()),
        _ => Err(OAuthError::invalid_request(
            "subject_token_type must be id_token or jwt",
        )),
    }
}

/// Space-separated scope tokens, duplicates dropped, order kept.
pub fn parse_scope(text: &str) -> Result<Vec<String>, OAuthError> {
    crate::policy::trust::requested_scopes(text).ok_or_else(|| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope holds an invalid character",
        )
    })
}
