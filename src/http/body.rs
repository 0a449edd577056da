//! Reading request bodies and form parameters with hard limits.

use std::borrow::Cow;

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
        for (k, v) in bytes.split(|&b| b == b'&').filter_map(decode_pair) {
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

/// One `name=value` pair, decoded as the WHATWG urlencoded parser does (`+` is a space,
/// `%XX` a byte, invalid UTF-8 replaced); `None` for an empty pair. One pass per part, and
/// none that copies when there is nothing to decode (a JWT: base64url and dots); the
/// general-purpose decoder made several passes over a kilobyte-sized token.
fn decode_pair(pair: &[u8]) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    if pair.is_empty() {
        return None;
    }
    let (name, value) = match pair.iter().position(|&b| b == b'=') {
        Some(eq) => (&pair[..eq], &pair[eq + 1..]),
        None => (pair, &[][..]),
    };
    Some((decode_part(name), decode_part(value)))
}

fn decode_part(part: &[u8]) -> Cow<'_, str> {
    if !part.iter().any(|&b| b == b'%' || b == b'+') {
        return utf8_lossy(Cow::Borrowed(part));
    }
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        let byte = match part[i] {
            b'+' => b' ',
            b'%' => match (part.get(i + 1).and_then(hex), part.get(i + 2).and_then(hex)) {
                (Some(high), Some(low)) => {
                    i += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            other => other,
        };
        out.push(byte);
        i += 1;
    }
    utf8_lossy(Cow::Owned(out))
}

fn hex(digit: &u8) -> Option<u8> {
    (*digit as char).to_digit(16).map(|d| d as u8)
}

/// Text of `bytes`, invalid sequences replaced; checks with the fast validator first, as
/// nearly every body is valid.
fn utf8_lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(b),
        },
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(text) => Cow::Owned(text),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fast path must not change what any body means.
        #[test]
        fn pairs_decode_as_the_whatwg_parser_does(body in proptest::collection::vec(
            proptest::sample::select(b"ab=&%+2F0fG\xff\xc3\xa9".to_vec()), 0..32)
        ) {
            let ours: Vec<_> = body.split(|&b| b == b'&').filter_map(decode_pair).collect();
            let reference: Vec<_> = form_urlencoded::parse(&body).collect();
            proptest::prop_assert_eq!(ours, reference);
        }
    }

    #[test]
    fn a_token_is_taken_as_it_is() {
        let params = Params::parse(b"subject_token=eyJ.a-b_c.d&scope=read+write&x=%41").unwrap();
        assert_eq!(params.get("subject_token"), Some("eyJ.a-b_c.d"));
        assert_eq!(params.get("scope"), Some("read write"));
        assert_eq!(params.get("x"), Some("A"));
    }
}
