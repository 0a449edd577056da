//! Fetching the broker's discovery document and JWKS: timeouts, no redirects, a size cap.

use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::error::FetchError;

/// Discovery and JWKS bodies larger than this are refused (the broker's are about 1 KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longer entity tags are not kept (the broker's are 66 bytes).
const MAX_ETAG_BYTES: usize = 256;

/// A JWKS response.
#[derive(Debug)]
pub(crate) enum Jwks {
    /// A document, with its freshness and entity tag.
    Document {
        doc: Value,
        max_age: Option<Duration>,
        etag: Option<String>,
    },
    /// 304: the keys cached under the entity tag sent are still current, for `max_age`.
    NotModified { max_age: Option<Duration> },
}

/// One GET: the JSON body (none on a 304), its `max-age` and its entity tag.
struct Response {
    body: Option<Value>,
    max_age: Option<Duration>,
    etag: Option<String>,
}

/// The HTTP side of key fetching.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// A client with `timeout` on connecting and on each whole request. Redirects are never
    /// followed and environment proxies are not used: the keys must come from the broker's
    /// own origin, by the route the operator configured.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("sts-verifier/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// The `jwks_uri` from `{issuer}/.well-known/openid-configuration`; `issuer` is the
    /// configured string, already checked to be an http(s) URL.
    pub async fn discover(&self, issuer: &str) -> Result<Url, FetchError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self
            .get_json(&discovery_url, None)
            .await?
            .body
            .unwrap_or_default();
        let invalid = |why: &str| FetchError::Invalid(format!("{discovery_url}: {why}"));
        // OIDC Discovery §4.3: the document must be about exactly the issuer we asked for,
        // or a compromised or mistaken host could vouch for keys of another issuer.
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(invalid("names another issuer"));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .ok_or_else(|| invalid("has no valid jwks_uri"))?;
        // The keys must live where the issuer lives: same scheme, host and port.
        let issuer_origin = Url::parse(issuer).map(|u| u.origin());
        if issuer_origin.ok() != Some(jwks_uri.origin()) {
            return Err(invalid("jwks_uri is not on the issuer's origin"));
        }
        Ok(jwks_uri)
    }

    /// The JWKS document, or, when `etag` (of the keys already held) still matches, word
    /// that they are current: revalidation costs the broker no body and the verifier no
    /// key parsing.
    pub async fn jwks(&self, jwks_uri: &Url, etag: Option<&str>) -> Result<Jwks, FetchError> {
        let response = self.get_json(jwks_uri.as_str(), etag).await?;
        Ok(match response.body {
            Some(doc) => Jwks::Document {
                doc,
                max_age: response.max_age,
                etag: response.etag,
            },
            None => Jwks::NotModified {
                max_age: response.max_age,
            },
        })
    }

    async fn get_json(
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
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
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
        let json = serde_json::from_slice(&body).map_err(|_| http("body is not JSON".into()))?;
        Ok(Response {
            body: Some(json),
            max_age,
            etag,
        })
    }
}

/// `value` when it is one well-formed entity tag (`"…"` or `W/"…"`, RFC 9110 §8.8.3) of
/// bounded length. Anything else is not kept: sent back as `If-None-Match`, `*` matches every
/// representation, so a server that once said `ETag: *` would have its keys renewed by 304s
/// whatever the broker publishes later.
fn entity_tag(value: &str) -> Option<&str> {
    let opaque = value.strip_prefix("W/").unwrap_or(value);
    let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b);
    (value.len() <= MAX_ETAG_BYTES && inner.bytes().all(etagc)).then_some(value)
}

/// `max-age=N` from a Cache-Control value; `no-store` and `no-cache` mean zero.
fn parse_max_age(value: &str) -> Option<Duration> {
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
        assert_eq!(secs("public"), None);
        assert_eq!(secs("max-age=abc"), None);
        assert_eq!(secs("s-maxage=5"), None);
    }
}
