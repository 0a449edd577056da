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
    // OIDC Discovery §4.3: the document must be about exactly the issuer asked for. Tokens
    // carry the document's spelling, so a registered URL that differs by a trailing slash
    // would match none of them: say so rather than "another issuer".
    if meta.issuer != issuer {
        if meta.issuer.trim_end_matches('/') == issuer.trim_end_matches('/') {
            return Err(invalid(&format!(
                "names the issuer {:?}, which differs from the registered url {issuer:?} by a \
                 trailing slash: the Issuer's url must be exactly the tokens' iss",
                meta.issuer
            )));
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::test_server::{Route, TestServer};

    /// A discovery document for an issuer.
    type Shape = dyn Fn(&str) -> serde_json::Value;

    /// The issuer `server.url + path`, whose discovery document is `doc(issuer)`.
    async fn serve(path: &str, doc: impl Fn(&str) -> serde_json::Value) -> (TestServer, String) {
        let server = TestServer::start().await;
        let issuer = format!("{}{path}", server.url);
        let at = format!(
            "{}/.well-known/openid-configuration",
            path.trim_end_matches('/')
        );
        server.route(&at, Route::json(&doc(&issuer)));
        (server, issuer)
    }

    fn fetcher() -> Fetcher {
        Fetcher::new(Duration::from_secs(10), "test").unwrap()
    }

    #[tokio::test]
    async fn documents_of_real_shapes() {
        // Kubernetes (and EKS, GKE, AKS): no authorization endpoint, and some without
        // `response_types_supported` either; keys under another path of the issuer's host.
        let kubernetes = |iss: &str| {
            json!({"issuer": iss, "jwks_uri": format!("{iss}/openid/v1/jwks"),
                   "subject_types_supported": ["public"],
                   "id_token_signing_alg_values_supported": ["RS256"]})
        };
        // GitHub Actions' enterprise issuers and GHES: keys beside the document.
        let github = |iss: &str| {
            json!({"issuer": iss, "jwks_uri": format!("{iss}/.well-known/jwks"),
                   "subject_types_supported": ["public", "pairwise"],
                   "response_types_supported": ["id_token"],
                   "claims_supported": ["sub", "aud", "repository_owner_id"],
                   "id_token_signing_alg_values_supported": ["RS256"],
                   "scopes_supported": ["openid"]})
        };
        // Bitbucket Pipelines: a per-workspace issuer deep in an API path.
        let bitbucket = |iss: &str| json!({"issuer": iss, "jwks_uri": format!("{iss}/keys.json")});
        let shapes: [(&str, &Shape, &str); 5] = [
            ("", &kubernetes, "/openid/v1/jwks"),
            ("/id/7E3B1F", &kubernetes, "/id/7E3B1F/openid/v1/jwks"),
            (
                "/acme-enterprise",
                &github,
                "/acme-enterprise/.well-known/jwks",
            ),
            (
                "/_services/token",
                &github,
                "/_services/token/.well-known/jwks",
            ),
            (
                "/2.0/workspaces/acme/pipelines-config/identity/oidc",
                &bitbucket,
                "/2.0/workspaces/acme/pipelines-config/identity/oidc/keys.json",
            ),
        ];
        for (path, doc, jwks_path) in shapes {
            let (server, issuer) = serve(path, doc).await;
            let uri = jwks_uri(&fetcher(), &issuer).await.unwrap();
            assert_eq!(uri, format!("{}{jwks_path}", server.url), "{path}");
        }
    }

    #[tokio::test]
    async fn an_issuer_with_a_trailing_slash_is_found_under_it() {
        // AKS's issuers end in `/`: the document is under the URL without it, and names the
        // issuer with it, exactly as the tokens do.
        let (server, issuer) = serve(
            "/tenant/cluster/",
            |iss| json!({"issuer": iss, "jwks_uri": format!("{iss}openid/v1/jwks")}),
        )
        .await;
        assert!(issuer.ends_with('/'));
        let uri = jwks_uri(&fetcher(), &issuer).await.unwrap();
        assert_eq!(uri, format!("{}/tenant/cluster/openid/v1/jwks", server.url));
    }

    #[tokio::test]
    async fn a_trailing_slash_of_difference_is_refused_and_named() {
        // Registered without the slash, the document says it has one.
        let (_server, issuer) = serve(
            "/tenant/cluster",
            |iss| json!({"issuer": format!("{iss}/"), "jwks_uri": format!("{iss}/openid/v1/jwks")}),
        )
        .await;
        let e = jwks_uri(&fetcher(), &issuer).await.unwrap_err().to_string();
        assert!(e.contains("trailing slash") && e.contains(&issuer), "{e}");
        // Registered with one, the document has none.
        let (server, _) = serve(
            "/x",
            |iss| json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}),
        )
        .await;
        let e = jwks_uri(&fetcher(), &format!("{}/x/", server.url))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("trailing slash"), "{e}");
        // Any other difference is another issuer.
        let (_server, issuer) = serve(
            "/y",
            |iss| json!({"issuer": format!("{iss}z"), "jwks_uri": format!("{iss}/jwks")}),
        )
        .await;
        let e = jwks_uri(&fetcher(), &issuer).await.unwrap_err().to_string();
        assert!(
            e.contains("names another issuer") && !e.contains("slash"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn keys_on_another_origin_are_refused() {
        // An in-cluster Kubernetes document names the API server's own address for its keys:
        // such an Issuer sets `jwks_url` instead.
        let (_server, issuer) = serve(
            "/k8s",
            |iss| json!({"issuer": iss, "jwks_uri": "https://172.20.0.3:6443/openid/v1/jwks"}),
        )
        .await;
        let e = jwks_uri(&fetcher(), &issuer).await.unwrap_err().to_string();
        assert!(e.contains("not on the issuer's origin"), "{e}");
    }
}
