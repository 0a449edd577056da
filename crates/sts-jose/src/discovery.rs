//! OpenID Connect Discovery, reduced to what key fetching needs: the `jwks_uri` of an
//! issuer, from a document that is about exactly that issuer.
//!
//! openidconnect's `ProviderMetadata` (4.1) is not used to read the document: it requires
//! `authorization_endpoint`, `response_types_supported` and `subject_types_supported`, and the
//! issuers a token broker exists for publish documents without an authorization endpoint.
//! Deserialising GitHub Actions' document (`token.actions.githubusercontent.com`), a GitHub
//! Enterprise Server one (`https://HOST/_services/token`), Kubernetes' service-account issuer
//! and Buildkite's into `CoreProviderMetadata` all fail with "missing field
//! `authorization_endpoint`"; only GitLab's passed. Its discovery client also fetches the
//! JWKS itself, without a size cap, `max-age` or ETag. So this is a serde type of the two
//! members that matter.

use reqwest::Url;
use serde::Deserialize;

use crate::fetch::{FetchError, Fetcher};

/// The members of a discovery document that key fetching reads (others are ignored).
#[derive(Debug, Deserialize)]
pub struct ProviderMetadata {
    /// Must equal the issuer asked about, exactly.
    pub issuer: String,
    /// Where the keys are.
    pub jwks_uri: String,
}

/// The URL of `issuer`'s discovery document.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches `issuer`'s discovery document and returns its `jwks_uri`, which must be on the
/// issuer's own origin (scheme, host and port): a compromised or mistaken document cannot
/// send the fetch to keys elsewhere. GitHub Enterprise's keys live under another path of its
/// host, which is fine.
pub async fn jwks_uri(fetcher: &Fetcher, issuer: &str) -> Result<String, FetchError> {
    let url = discovery_url(issuer);
    let invalid = |why: &str| FetchError::Invalid(format!("{url}: {why}"));
    let doc = fetcher.get_json(&url, None).await?.body.unwrap_or_default();
    let meta: ProviderMetadata =
        serde_json::from_value(doc.into()).map_err(|_| invalid("has no issuer or no jwks_uri"))?;
    // OIDC Discovery §4.3: the document must be about exactly the issuer asked for.
    if meta.issuer != issuer {
        return Err(invalid("names another issuer"));
    }
    let jwks = Url::parse(&meta.jwks_uri).map_err(|_| invalid("has an invalid jwks_uri"))?;
    let origin = Url::parse(issuer).map(|u| u.origin());
    if origin.ok() != Some(jwks.origin()) {
        return Err(invalid(
            "jwks_uri is not on the issuer's origin (an Issuer's jwks_url can name it)",
        ));
    }
    Ok(meta.jwks_uri)
}
