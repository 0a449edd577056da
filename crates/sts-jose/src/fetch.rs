//! The capped fetch: one GET of a JSON document with a timeout, no redirects, no proxy, a
//! size cap, its `Cache-Control: max-age` and its entity tag, and `If-None-Match`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};
use serde_json::{Map, Value};

use crate::json;

/// Discovery and JWKS bodies larger than this are refused (real ones are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longer entity tags are not kept.
const MAX_ETAG_BYTES: usize = 256;

/// Why a document could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connection, timeout, status or size failure.
    #[error("{url}: {reason}")]
    Http {
        /// What was fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A document is not what it must be.
    #[error("{0}")]
    Invalid(String),
    /// A recent fetch failed and the cooldown has not passed.
    #[error("the last key fetch failed moments ago")]
    CoolingDown,
}

/// One response: the JSON object (none on a 304), its `max-age` and its entity tag.
#[derive(Debug)]
pub struct Response {
    /// The document; `None` when a conditional request was answered 304.
    pub body: Option<Map<String, Value>>,
    /// `Cache-Control: max-age`, when sent (`no-store`/`no-cache` mean zero).
    pub max_age: Option<Duration>,
    /// One well-formed entity tag, when sent.
    pub etag: Option<String>,
}

/// The HTTP client for discovery and JWKS documents.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// A client with `timeout` on connecting and on each request, sending `user_agent`.
    /// Redirects are never followed (a document that redirects could send the fetch
    /// anywhere) and environment proxies are not used: keys come by the route the operator
    /// configured, from the origin that was registered.
    pub fn new(timeout: Duration, user_agent: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(user_agent)
            .build()?;
        Ok(Self { client })
    }

    /// GETs `url` as a JSON object with unique members (at any depth, as tokens). With
    /// `if_none_match`, a 304 answers `body: None`.
    pub async fn get_json(
        &self,
        url: &str,
        if_none_match: Option<&str>,
    ) -> Result<Response, FetchError> {
        let http = |reason: String| FetchError::Http {
            url: url.to_owned(),
            reason,
        };
        let mut request = self.client.get(url).header("accept", "application/json");
        if let Some(etag) = if_none_match {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| http(e.without_url().to_string()))?;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let max_age = header(CACHE_CONTROL).and_then(parse_max_age);
        let etag = header(ETAG).and_then(entity_tag).map(str::to_owned);
        // A 304 answers only a conditional request; unasked, it is an error like any other.
        if response.status() == StatusCode::NOT_MODIFIED && if_none_match.is_some() {
            return Ok(Response {
                body: None,
                max_age,
                etag,
            });
        }
        if !response.status().is_success() {
            return Err(http(format!("status {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(http("body too large".into()));
        }
        // Read chunk by chunk so a huge or endless body is cut off at the cap, whatever its
        // Content-Length says.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(http("body too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let doc = json::object(&body).map_err(|e| http(format!("body: {e}")))?;
        Ok(Response {
            body: Some(doc),
            max_age,
            etag,
        })
    }
}

/// `value` when it is one well-formed entity tag (`"…"` or `W/"…"`, RFC 9110 §8.8.3) of
/// bounded length. Anything else is not kept: sent back as `If-None-Match`, `*` matches every
/// representation, so a server that once said `ETag: *` would have its keys renewed by 304s
/// whatever it publishes later.
fn entity_tag(value: &str) -> Option<&str> {
    let opaque = value.strip_prefix("W/").unwrap_or(value);
    let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b);
    (value.len() <= MAX_ETAG_BYTES && inner.bytes().all(etagc)).then_some(value)
}

/// `max-age=N` from a Cache-Control value; `no-store` and `no-cache` mean zero.
pub fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        seconds
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_well_formed_entity_tags_are_kept() {
        assert_eq!(entity_tag("\"v1-abc\""), Some("\"v1-abc\""));
        assert_eq!(entity_tag("W/\"x\""), Some("W/\"x\""));
        assert_eq!(entity_tag("\"\""), Some("\"\""));
        for bad in [
            "*",
            "v1",
            "\"a",
            "a\"",
            "\"a\", \"b\"",
            "\"a b\"",
            "w/\"x\"",
            "",
        ] {
            assert_eq!(entity_tag(bad), None, "{bad:?}");
        }
        assert_eq!(entity_tag(&format!("\"{}\"", "a".repeat(300))), None);
    }

    #[test]
    fn max_age() {
        let secs = |v| parse_max_age(v).map(|d| d.as_secs());
        assert_eq!(secs("public, max-age=300"), Some(300));
        assert_eq!(secs("Max-Age=\"60\""), Some(60));
        assert_eq!(secs("no-store"), Some(0));
        assert_eq!(secs("no-cache"), Some(0));
        assert_eq!(secs("public"), None);
        assert_eq!(secs("max-age=abc"), None);
        assert_eq!(secs("s-maxage=5"), None);
    }
}
