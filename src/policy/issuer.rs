//! A registered identity provider, validated.

use std::sync::Arc;
use std::time::Duration;

use sts_jose::cache::KeySource;

use super::document::IssuerDoc;
use crate::jose::{Algorithm, alg};

/// Default ceiling on an inbound token's `exp - iat`.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// GitHub Actions' issuer host: its own URL, and enterprise issuers under it.
const GITHUB_ACTIONS_HOST: &str = "token.actions.githubusercontent.com";

/// The events guarded by default on GitHub Actions' issuers. Both run with the base
/// repository's permissions (and its secrets and `id-token: write`) on code or input that an
/// outsider can influence: `pull_request_target` on a fork's pull request, `workflow_run`
/// after a workflow that such a pull request triggered. A policy written for `push` must not
/// admit them by accident.
pub const GITHUB_GUARDED_EVENTS: &[&str] = &["pull_request_target", "workflow_run"];

/// An issuer whose tokens the broker accepts.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Name policies refer to.
    pub name: String,
    /// Exact `iss` value.
    pub url: String,
    /// Accepted inbound `aud` values.
    pub audiences: Vec<String>,
    /// Accepted inbound algorithms (never `none` or HMAC).
    pub algorithms: Vec<Algorithm>,
    /// Prefix of issued subjects.
    pub subject_prefix: String,
    /// Anyone can get a token from it: policies must pin an owner.
    pub shared: bool,
    /// Each `jti` at most once.
    pub replay_protection: bool,
    /// Ceiling on inbound `exp - iat`.
    pub max_token_lifetime: Duration,
    /// Explicit JWKS URL (skips discovery).
    pub jwks_url: Option<String>,
    /// `event_name` values admitted only by policies that match `event_name` themselves.
    pub guarded_events: Arc<[String]>,
    /// What determines its keys (`url`, `jwks_url`, `algorithms`): the key cache is keyed by
    /// it, so a changed document means other keys at once.
    pub key_source: KeySource,
    /// The document it was built from.
    pub doc: IssuerDoc,
}

impl Issuer {
    /// Validates a document. `allow_loopback_http` admits `http://127.0.0.1…`/`localhost`.
    pub fn compile(doc: &IssuerDoc, allow_loopback_http: bool) -> Result<Self, (String, String)> {
        let err = |field: &str, reason: String| Err((field.to_owned(), reason));
        if let Err(reason) = super::check_name(&doc.name) {
            return err("name", reason);
        }
        if let Err(reason) = check_issuer_url(&doc.url, allow_loopback_http) {
            return err("url", reason);
        }
        if let Some(jwks_url) = &doc.jwks_url
            && let Err(reason) = check_issuer_url(jwks_url, allow_loopback_http)
        {
            return err("jwks_url", reason);
        }
        if doc.audiences.is_empty() || doc.audiences.iter().any(|a| a.is_empty()) {
            return err(
                "audiences",
                "at least one non-empty audience is required: an issuer without an audience \
                 check accepts tokens minted for any other service"
                    .into(),
            );
        }
        let algorithms = match &doc.algorithms {
            None => vec![Algorithm::RS256, Algorithm::ES256],
            Some(list) if list.is_empty() => return err("algorithms", "may not be empty".into()),
            Some(list) => {
                let mut algs = Vec::new();
                for name in list {
                    match alg::parse(name) {
                        Some(a) => algs.push(a),
                        None => {
                            return err(
                                "algorithms",
                                format!(
                                    "{name:?} is not accepted: use RS256/384/512, PS256/384/512, \
                                     ES256/384 or EdDSA (never none or HMAC)"
                                ),
                            );
                        }
                    }
                }
                algs
            }
        };
        let subject_prefix = match doc.subject_prefix.as_deref() {
            None => format!("{}:", doc.name),
            Some("-") => String::new(),
            Some(p) => p.to_owned(),
        };
        let max_token_lifetime = doc
            .max_token_lifetime
            .map_or(DEFAULT_MAX_TOKEN_LIFETIME, |d| d.0);
        if max_token_lifetime.is_zero() {
            return err("max_token_lifetime", "must be positive".into());
        }
        let guarded_events: Vec<String> = match &doc.guarded_events {
            Some(events) => {
                if let Some(bad) = events.iter().find(|e| e.trim().is_empty() || e.len() > 128) {
                    return err(
                        "guarded_events",
                        format!("{bad:?} is not an event name (1-128 characters, not blank)"),
                    );
                }
                events.clone()
            }
            None if is_github_actions(&doc.url) => GITHUB_GUARDED_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            None => Vec::new(),
        };
        Ok(Self {
            name: doc.name.clone(),
            url: doc.url.clone(),
            audiences: doc.audiences.clone(),
            key_source: KeySource {
                issuer: doc.url.clone(),
                jwks_url: doc.jwks_url.clone(),
                algorithms: key_algorithms(&algorithms),
            },
            algorithms,
            subject_prefix,
            shared: doc.shared,
            replay_protection: doc.replay_protection,
            max_token_lifetime,
            jwks_url: doc.jwks_url.clone(),
            guarded_events: guarded_events.into(),
            doc: doc.clone(),
        })
    }
}

/// GitHub Actions' issuer (`https://token.actions.githubusercontent.com`) or a path under it
/// (an enterprise's own issuer, `…/<enterprise>`).
pub fn is_github_actions(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https" && u.host_str() == Some(GITHUB_ACTIONS_HOST) && u.port().is_none()
    })
}

/// Any userinfo, even an empty one: the parser drops `https://:@host`'s, so the written
/// authority is checked too.
fn has_userinfo(text: &str, url: &url::Url) -> bool {
    let authority = text.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    !url.username().is_empty() || url.password().is_some() || authority.contains('@')
}

/// Only https issuers are fetched; plain http only for loopback, and only when allowed.
pub(crate) fn check_issuer_url(text: &str, allow_loopback_http: bool) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() || has_userinfo(text, &url) {
        return Err(format!(
            "{text:?}: an issuer URL has no query, fragment or credentials"
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_loopback_http && is_loopback(&url) => Ok(()),
        "http" if is_loopback(&url) => Err(format!(
            "{text:?}: plain http is only accepted with allow_insecure_loopback_issuers"
        )),
        _ => Err(format!("{text:?}: issuer URLs must be https")),
    }
}

/// True for `localhost` and loopback IP literals.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The algorithms as a key source names them: a set, so that writing them in another order
/// (or twice) is the same source and keeps its cached keys.
fn key_algorithms(algorithms: &[Algorithm]) -> Vec<Algorithm> {
    let mut set = algorithms.to_vec();
    set.sort_by_key(|a| format!("{a:?}"));
    set.dedup();
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(url: &str, guarded: Option<&[&str]>) -> Issuer {
        let mut doc = serde_json::json!({"name": "i", "url": url, "audiences": ["sts"]});
        if let Some(events) = guarded {
            doc["guarded_events"] = serde_json::json!(events);
        }
        Issuer::compile(&serde_json::from_value(doc).unwrap(), false).unwrap()
    }

    #[test]
    fn github_actions_issuers_guard_events_by_default() {
        let default: Vec<String> = GITHUB_GUARDED_EVENTS
            .iter()
            .map(|e| e.to_string())
            .collect();
        for url in [
            "https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com/",
            "https://token.actions.githubusercontent.com/acme-enterprise",
            "https://TOKEN.actions.githubusercontent.com/acme",
        ] {
            assert_eq!(
                &*issuer(url, None).guarded_events,
                default.as_slice(),
                "{url}"
            );
        }
        for url in [
            "https://gitlab.com",
            "https://github.example.com/_services/token",
            "https://token.actions.githubusercontent.com.evil.example",
            "https://token.actions.githubusercontent.com:8443",
            "https://evil.example/token.actions.githubusercontent.com",
        ] {
            assert!(issuer(url, None).guarded_events.is_empty(), "{url}");
        }
        let gh = "https://token.actions.githubusercontent.com";
        assert!(
            issuer(gh, Some(&[])).guarded_events.is_empty(),
            "[] turns it off"
        );
        assert_eq!(
            &*issuer(gh, Some(&["issue_comment"])).guarded_events,
            ["issue_comment"]
        );
        assert_eq!(
            &*issuer(
                "https://ghes.example/_services/token",
                Some(&["workflow_run"])
            )
            .guarded_events,
            ["workflow_run"]
        );
        let blank: IssuerDoc = serde_json::from_value(
            serde_json::json!({"name": "i", "url": gh, "audiences": ["a"], "guarded_events": [" "]}),
        )
        .unwrap();
        assert_eq!(
            Issuer::compile(&blank, false).unwrap_err().0,
            "guarded_events"
        );
    }

    #[test]
    fn issuer_urls() {
        assert!(check_issuer_url("https://token.actions.githubusercontent.com", false).is_ok());
        assert!(check_issuer_url("http://example.com", true).is_err());
        assert!(check_issuer_url("http://127.0.0.1:9000/idp", false).is_err());
        assert!(check_issuer_url("http://127.0.0.1:9000/idp", true).is_ok());
        assert!(check_issuer_url("http://localhost:9000", true).is_ok());
        assert!(check_issuer_url("http://127.0.0.1.evil.com", true).is_err());
        assert!(check_issuer_url("https://a.example/?x=1", false).is_err());
        assert!(check_issuer_url("file:///etc/passwd", true).is_err());
        // Userinfo of any shape: credentials in a URL end up in logs and documents.
        assert!(check_issuer_url("https://:pw@a.example", false).is_err());
        assert!(check_issuer_url("https://user@a.example", false).is_err());
        assert!(check_issuer_url("https://user:pw@a.example", false).is_err());
        assert!(check_issuer_url("https://:@a.example", false).is_err());
    }
}
