//! Fetching an issuer's discovery document and JWKS: only for registered issuers, with
//! timeouts, no redirects, and a cap on every body.

use std::time::Duration;

use reqwest::header::CACHE_CONTROL;
use serde_json::Value;

use crate::policy::Issuer;
use crate::policy::issuer::is_loopback;

/// Discovery and JWKS bodies larger than this are refused.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why an issuer's keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection, timeout or status failure.
    #[error("{url}: {reason}")]
    Http {
        /// What was fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The document is not what it must be.
    #[error("{0}")]
    Invalid(String),
}

/// A fetched JWKS and how long its server says it may be cached.
#[derive(Debug)]
pub struct FetchedJwks {
    /// The JWKS document.
    pub jwks: Value,
    /// `Cache-Control: max-age`, when the server sent one.
    pub max_age: Option<Duration>,
}

/// The HTTP client used for issuers.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allow_loopback_http: bool,
}

impl Fetcher {
    /// Builds the client. Redirects are never followed: a discovery document that redirects
    /// could send the broker anywhere. Proxies from the environment are not used either.
    pub fn new(timeout: Duration, allow_loopback_http: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("sts-broker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_loopback_http,
        })
    }

    /// Fetches the issuer's JWKS: from its configured `jwks_url`, or from the `jwks_uri` its
    /// discovery document names (which must be on the issuer's own host).
    #[tracing::instrument(skip_all, fields(issuer = %issuer.name))]
    pub async fn fetch_jwks(&self, issuer: &Issuer) -> Result<FetchedJwks, FetchError> {
        let jwks_uri = match &issuer.jwks_url {
            Some(url) => url.clone(),
            None => self.discover_jwks_uri(&issuer.url).await?,
        };
        let (jwks, max_age) = self.get_json(&jwks_uri).await?;
        Ok(FetchedJwks { jwks, max_age })
    }

    async fn discover_jwks_uri(&self, issuer_url: &str) -> Result<String, FetchError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer_url.trim_end_matches('/')
        );
        let (discovery, _) = self.get_json(&discovery_url).await?;
        // OIDC Discovery §4.3: the document's issuer must be exactly the one we asked about.
        if discovery.get("issuer").and_then(Value::as_str) != Some(issuer_url) {
            return Err(FetchError::Invalid(format!(
                "discovery of {issuer_url} names another issuer"
            )));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                FetchError::Invalid(format!("discovery of {issuer_url} has no jwks_uri"))
            })?;
        self.check_jwks_uri(issuer_url, jwks_uri)?;
        Ok(jwks_uri.to_owned())
    }

    /// The JWKS must be on the issuer's own host, over https (or allowed loopback http).
    fn check_jwks_uri(&self, issuer_url: &str, jwks_uri: &str) -> Result<(), FetchError> {
        let invalid = |why: &str| FetchError::Invalid(format!("jwks_uri {jwks_uri:?} {why}"));
        let issuer = url::Url::parse(issuer_url).map_err(|_| invalid("has an invalid issuer"))?;
        let jwks = url::Url::parse(jwks_uri).map_err(|_| invalid("is not a URL"))?;
        let scheme_ok = match jwks.scheme() {
            "https" => true,
            "http" => self.allow_loopback_http && is_loopback(&jwks),
            _ => false,
        };
        if !scheme_ok {
            return Err(invalid("must be https"));
        }
        if jwks.host_str() != issuer.host_str()
            || jwks.port_or_known_default() != issuer.port_or_known_default()
        {
            return Err(invalid(
                "is not on the issuer's host (set jwks_url on the Issuer to allow it)",
            ));
        }
        Ok(())
    }

    async fn get_json(&self, url: &str) -> Result<(Value, Option<Duration>), FetchError> {
        let http = |reason: String| FetchError::Http {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| http(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("status {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(http("body too large".into()));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
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
        Ok((json, max_age))
    }
}

/// `max-age=N` from a Cache-Control value; `no-store`/`no-cache` mean zero.
fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        let (k, v) = d.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
