//! Reading request bodies and form parameters with hard limits.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use super::oauth_error::OAuthError;

/// Request bodies larger than this are refused with 413 (SPEC: 64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn too_large() -> OAuthError {
    OAuthError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
        "request body is larger than 64 KiB",
    )
}

/// Reads the body, refusing it as soon as it passes the limit (before any parsing).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, OAuthError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| OAuthError::invalid_request("request body could not be read"))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// More parameters than any RFC 8693 request needs; past this the request is refused, so
/// the duplicate check stays cheap on a hostile body.
const MAX_PARAMS: usize = 32;

/// Parameters of a form or query string. RFC 6749 §3.1: a parameter may appear once, and one
/// sent without a value is treated as omitted.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, OAuthError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            if v.is_empty() {
                continue;
            }
            if params.len() == MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if params.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k:?} is repeated"
                )));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(params))
    }

    /// Adds `other`'s parameters; one given in both is refused as repeated.
    pub fn merge(&mut self, other: Params) -> Result<(), OAuthError> {
        for (k, v) in other.0 {
            if self.get(&k).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k:?} is repeated"
                )));
            }
            self.0.push((k, v));
        }
        Ok(())
    }

    /// Every parameter, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required parameter.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name:?}")))
    }
}

/// True when the request's content type is a form.
pub fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
