//! `POST /introspect` (RFC 7662): online checks for relying parties that want revocation.
//!
//! The caller authenticates with a broker token whose `aud` is the broker's issuer URL and
//! whose scope holds `introspect`. The answer about the presented token is `active: true`
//! with its claims, or a bare `active: false` whatever the reason (expired, revoked, signed
//! by someone else, garbled), so the endpoint is no oracle for forgers.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::body::{Params, is_form, read_limited};
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::admin::{AuthError, Authenticator};

/// Claims an introspection answer repeats (RFC 7662 §2.2).
const ANSWERED: [&str; 10] = [
    "sub",
    "aud",
    "scope",
    "exp",
    "iat",
    "nbf",
    "client_id",
    "jti",
    "iss",
    "act",
];

/// The handler.
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    authenticator: web::Data<Authenticator>,
    id: RequestId,
) -> HttpResponse {
    match handle(&req, payload, &authenticator).await {
        Ok(body) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .insert_header((PRAGMA, "no-cache"))
            .json(body),
        Err(e) => e.response(&id.0),
    }
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    authenticator: &Authenticator,
) -> Result<Value, OAuthError> {
    let now = crate::jose::unix_now();
    authenticate_caller(req, authenticator, now)?;
    let body = read_limited(req, payload).await?;
    if !is_form(req) {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(&body)?;
    let token = params.require("token")?;
    // `token_type_hint` may be sent; every token here is an access token.
    Ok(answer(authenticator, token, now))
}

/// The caller must hold a live, unrevoked broker token for the broker itself with scope
/// `introspect` (SPEC). 401 without one, 403 with too little scope.
fn authenticate_caller(
    req: &HttpRequest,
    authenticator: &Authenticator,
    now: i64,
) -> Result<(), OAuthError> {
    match authenticator.introspector(super::bearer(req), now) {
        Ok(()) => Ok(()),
        Err(AuthError::Unauthenticated) => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a broker token with scope introspect is required",
        )
        .with_challenge("Bearer realm=\"sts-broker\", scope=\"introspect\"")),
        Err(AuthError::Forbidden) => Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the caller's token lacks scope introspect",
        )),
    }
}

fn answer(authenticator: &Authenticator, token: &str, now: i64) -> Value {
    let Some(claims) = authenticator.active_claims(token, now) else {
        return json!({"active": false});
    };
    let mut body: Map<String, Value> = ANSWERED
        .iter()
        .filter_map(|name| claims.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect();
    body.insert("active".into(), Value::Bool(true));
    body.insert("token_type".into(), json!("Bearer"));
    Value::Object(body)
}
