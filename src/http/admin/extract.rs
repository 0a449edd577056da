//! What admin routes take from a request before they run: the authenticated admin, the
//! `If-Match` precondition, and JSON bodies, each refused in the admin error shape.

use std::future::{Ready, ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::failure::AdminFailure;
use crate::admin::{Access, Authenticator, Precondition, Principal};
use crate::audit::Actor;
use crate::http::body::{MAX_BODY_BYTES, read_limited};
use crate::http::oauth_error::OAuthError;
use crate::http::request_id::RequestId;

/// An admin with `admin:read` (or the bootstrap secret).
pub struct Reader;

/// An admin with `admin:write` (or the bootstrap secret).
pub struct Writer(pub Principal);

impl Writer {
    /// The admin as the audit record of this request names them.
    pub fn actor<'a>(&'a self, id: &'a RequestId) -> Actor<'a> {
        Actor {
            name: &self.0.name,
            request_id: &id.0,
        }
    }
}

/// Authenticates the bearer of `req` for `access`.
pub fn authenticate(req: &HttpRequest, access: Access) -> Result<Principal, AdminFailure> {
    let id = request_id(req);
    let authenticator = req
        .app_data::<web::Data<Authenticator>>()
        .expect("the authenticator is registered with the admin routes");
    authenticator
        .admin(crate::http::bearer(req), access, crate::jose::unix_now())
        .map_err(|e| AdminFailure::auth(e, &id))
}

fn request_id(req: &HttpRequest) -> RequestId {
    RequestId::extract(req)
        .into_inner()
        .unwrap_or_else(|_| RequestId(String::new()))
}

impl FromRequest for Reader {
    type Error = AdminFailure;
    type Future = Ready<Result<Self, AdminFailure>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, Access::Read).map(|_| Reader))
    }
}

impl FromRequest for Writer {
    type Error = AdminFailure;
    type Future = Ready<Result<Self, AdminFailure>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, Access::Write).map(Writer))
    }
}

/// The `If-Match` precondition of a write (RFC 9110 §13.1.1), in stored versions. Entity
/// tags are compared strongly: a weak tag (`W/"v3"`), or one this API never gave, matches no
/// version (412 when the write is tried); only a header that is not an entity-tag list at
/// all is a bad request.
pub struct IfMatch(pub Precondition);

impl FromRequest for IfMatch {
    type Error = AdminFailure;
    type Future = Ready<Result<Self, AdminFailure>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(header::IF_MATCH)
            .map(|v| v.as_bytes())
            .collect();
        ready(parse_if_match(&values).map(IfMatch).ok_or_else(|| {
            AdminFailure::invalid(
                "If-Match must be * or a list of entity tags",
                &request_id(req),
            )
        }))
    }
}

/// `None` for a malformed header.
fn parse_if_match(values: &[&[u8]]) -> Option<Precondition> {
    if values.is_empty() {
        return Some(Precondition::Always);
    }
    let text = values
        .iter()
        .map(|v| std::str::from_utf8(v).ok())
        .collect::<Option<Vec<_>>>()?
        .join(",");
    let members: Vec<&str> = text.split(',').map(str::trim).collect();
    if members == ["*"] {
        return Some(Precondition::Exists);
    }
    let mut versions = Vec::new();
    for member in members.into_iter().filter(|m| !m.is_empty()) {
        let (weak, tag) = match member.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, member),
        };
        let opaque = tag.strip_prefix('"')?.strip_suffix('"')?;
        // RFC 9110 etagc: visible characters but `"`, and obs-text.
        if opaque.bytes().any(|b| b == b'"' || b < 0x21 || b == 0x7f) {
            return None;
        }
        let ours = opaque.strip_prefix('v').and_then(|n| n.parse::<i64>().ok());
        if let (false, Some(version)) = (weak, ours) {
            versions.push(version);
        }
    }
    Some(Precondition::OneOf(versions))
}

/// The entity tag of a stored version.
pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// A JSON body (`application/json`, at most 64 KiB); empty means the type's default.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = AdminFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AdminFailure>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = web::Payload::from_request(&req, payload).into_inner();
        Box::pin(async move {
            let id = request_id(&req);
            let payload = payload.map_err(|_| {
                AdminFailure::oauth(
                    OAuthError::invalid_request("request body could not be read"),
                    &id,
                )
            })?;
            let bytes = read_limited(&req, payload)
                .await
                .map_err(|e| AdminFailure::oauth(e, &id))?;
            if bytes.is_empty() {
                return Ok(OptionalJson(T::default()));
            }
            if !is_json(&req) {
                return Err(AdminFailure::invalid(
                    "content type must be application/json",
                    &id,
                ));
            }
            serde_json::from_slice(&bytes)
                .map(OptionalJson)
                .map_err(|e| AdminFailure::invalid(format!("invalid body: {e}"), &id))
        })
    }
}

/// A JSON body's bytes, read within the size limit, refused unless `application/json`.
pub async fn json_bytes(
    req: &HttpRequest,
    payload: web::Payload,
    id: &RequestId,
) -> Result<web::Bytes, AdminFailure> {
    let bytes = read_limited(req, payload)
        .await
        .map_err(|e| AdminFailure::oauth(e, id))?;
    if !is_json(req) {
        return Err(AdminFailure::invalid(
            "content type must be application/json",
            id,
        ));
    }
    Ok(bytes)
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// `web::Json` bodies of the admin API: at most 64 KiB, `application/json`, refused in the
/// admin error shape.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|e, req| {
            use actix_web::error::JsonPayloadError;
            let id = request_id(req);
            let failure = match &e {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => AdminFailure::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "request body is larger than 64 KiB",
                    &id,
                ),
                JsonPayloadError::ContentType => {
                    AdminFailure::invalid("content type must be application/json", &id)
                }
                JsonPayloadError::Deserialize(e) => {
                    AdminFailure::invalid(format!("invalid body: {e}"), &id)
                }
                _ => AdminFailure::invalid("request body could not be read", &id),
            };
            failure.into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Option<Precondition> {
        let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        parse_if_match(&bytes)
    }

    #[test]
    fn if_match_compares_strongly_and_refuses_only_garbage() {
        assert_eq!(parse(&[]), Some(Precondition::Always));
        assert_eq!(parse(&["*"]), Some(Precondition::Exists));
        assert_eq!(parse(&["\"v3\""]), Some(Precondition::OneOf(vec![3])));
        assert_eq!(
            parse(&["\"v3\", \"v4\"", "\"v9\""]),
            Some(Precondition::OneOf(vec![3, 4, 9]))
        );
        // Weak tags and tags this API never gave match nothing: 412, not 400.
        assert_eq!(parse(&["W/\"v3\""]), Some(Precondition::OneOf(vec![])));
        assert_eq!(parse(&["\"abc\""]), Some(Precondition::OneOf(vec![])));
        assert_eq!(
            parse(&["W/\"v3\", \"v5\""]),
            Some(Precondition::OneOf(vec![5]))
        );
        for garbage in ["v3", "\"v3", "*, \"v3\"", "\"a\"b\"", "W/v3"] {
            assert_eq!(parse(&[garbage]), None, "{garbage}");
        }
    }
}
