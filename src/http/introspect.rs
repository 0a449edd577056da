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
use crate::broker::Broker;
use crate::mint::verify::{CREDENTIAL_LEEWAY_SECS, scopes};

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
    broker: web::Data<Broker>,
    id: RequestId,
) -> HttpResponse {
    match handle(&req, payload, &broker).await {
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
    broker: &Broker,
) -> Result<Value, OAuthError> {
    let now = crate::jose::unix_now();
    authenticate_caller(req, broker, now)?;
    let body = read_limited(req, payload).await?;
    if !is_form(req) {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(&body)?;
    let token = params.require("token")?;
    // `token_type_hint` may be sent; every token here is an access token.
    Ok(answer(broker, token, now))
}

/// The caller must hold a live, unrevoked broker token for the broker itself with scope
/// `introspect` (SPEC). 401 without one, 403 with too little scope.
fn authenticate_caller(req: &HttpRequest, broker: &Broker, now: i64) -> Result<(), OAuthError> {
    let unauthorized = || {
        OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a broker token with scope introspect is required",
        )
        .with_challenge("Bearer realm=\"sts-broker\", scope=\"introspect\"")
    };
    let bearer = super::bearer(req).ok_or_else(unauthorized)?;
    let claims = broker
        .keys
        .load()
        .verify_own(
            bearer,
            &broker.issuer_url,
            Some(&broker.issuer_url),
            now,
            CREDENTIAL_LEEWAY_SECS,
        )
        .filter(|claims| !broker.revocations.is_revoked(claims))
        .ok_or_else(unauthorized)?;
    if !scopes(&claims).any(|s| s == "introspect") {
        return Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the caller's token lacks scope introspect",
        ));
    }
    Ok(())
}

fn answer(broker: &Broker, token: &str, now: i64) -> Value {
    let claims = broker
        .keys
        .load()
        .verify_own(token, &broker.issuer_url, None, now, 0)
        .filter(|claims| !broker.revocations.is_revoked(claims));
    let Some(claims) = claims else {
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
