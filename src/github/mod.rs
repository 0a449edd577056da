//! GitHub's API, as far as installation tokens need it: the app JWT, the installation of an
//! app on an owner (cached), and the token itself. Called only after a policy has admitted
//! a validated token and decided what to ask for.

mod call;
mod jwt;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::metrics::Metrics;
use crate::policy::github::{GitHubApp, GitHubRequest};
use crate::secret::Secret;

use call::{Answer, Failure};

/// How long an installation id is remembered: an app uninstalled and installed again gets a
/// new id, and a stale one only costs one refused call (which forgets it).
const INSTALLATION_TTL: Duration = Duration::from_secs(10 * 60);
/// Installations remembered at most (one per app and owner).
const INSTALLATION_CAPACITY: u64 = 10_000;

/// An installation token GitHub created.
#[derive(Debug)]
pub struct InstallationToken {
    /// The token (never logged: `Debug` hides it).
    pub token: Secret,
    /// Unix seconds, from GitHub's `expires_at`.
    pub expires_at: i64,
    /// The installation it belongs to.
    pub installation_id: u64,
    /// GitHub's `x-github-request-id` of the token call.
    pub request_id: Option<String>,
}

/// Why GitHub gave no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    /// Unreachable, failing (5xx) or rate limiting: retry, after the wait when known.
    #[error("GitHub is unavailable")]
    Unavailable {
        /// When GitHub said to come back.
        retry_after: Option<Duration>,
        /// The status GitHub answered, if it answered.
        status: Option<u16>,
        /// GitHub's request id, if it answered.
        request_id: Option<String>,
    },
    /// GitHub refused (the app is not installed on the owner, or may not grant this).
    #[error("GitHub refused the request ({status})")]
    Refused {
        /// The status GitHub answered.
        status: u16,
        /// GitHub's request id.
        request_id: Option<String>,
    },
    /// The app's key is not loaded (a set compiled without keys): never while serving.
    #[error("the GitHub App's private key is not loaded")]
    NoKey,
}

/// The client: one HTTP client, one installation cache.
pub struct GitHubClient {
    http: reqwest::Client,
    /// The whole of one token's calls and retries ends within this.
    deadline: Duration,
    installations: moka::sync::Cache<(String, u64, String), u64>,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
    expires_at: String,
}

impl GitHubClient {
    /// A client whose every call ends within `timeout`, and every token (lookups, retries
    /// and all) within twice that.
    pub fn new(timeout: Duration, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect could carry the app JWT to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sts-broker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let installations = moka::sync::Cache::builder()
            .max_capacity(INSTALLATION_CAPACITY)
            .time_to_live(INSTALLATION_TTL)
            .build();
        Ok(Self {
            http,
            deadline: timeout * 2,
            installations,
            metrics,
        })
    }

    /// Creates an installation token for exactly `request` (its repositories, when given,
    /// and its permissions) with `app` at `now`.
    #[tracing::instrument(skip_all, fields(app = %app.name, owner = %request.owner))]
    pub async fn installation_token(
        &self,
        app: &GitHubApp,
        request: &GitHubRequest,
        now: i64,
    ) -> Result<InstallationToken, GitHubError> {
        // Each call has its timeout; retries and the two lookups could still add up to
        // more than a client waits.
        let create = self.create_token(app, request, now);
        match tokio::time::timeout(self.deadline, create).await {
            Ok(result) => result,
            Err(_) => {
                self.count("access_token", "unavailable");
                tracing::warn!("GitHub did not answer within the deadline");
                Err(GitHubError::Unavailable {
                    retry_after: None,
                    status: None,
                    request_id: None,
                })
            }
        }
    }

    async fn create_token(
        &self,
        app: &GitHubApp,
        request: &GitHubRequest,
        now: i64,
    ) -> Result<InstallationToken, GitHubError> {
        let key = app.key.as_ref().ok_or(GitHubError::NoKey)?;
        let jwt = jwt::app_jwt(key, app.app_id, now).map_err(|e| {
            tracing::error!(error = %e, "signing the app JWT failed");
            GitHubError::NoKey
        })?;
        let id = self.installation(app, &request.owner, &jwt).await?;
        let url = format!("{}/app/installations/{id}/access_tokens", app.api_url);
        let answer = self
            .call(
                "access_token",
                self.http.post(&url).json(&token_body(request)),
                &jwt,
            )
            .await;
        let answer = match answer {
            Ok(a) if a.status == 201 => a,
            Ok(a) => {
                // The installation may be gone, or replaced: look it up afresh next time.
                self.installations
                    .invalidate(&cache_key(app, &request.owner));
                return Err(self.refused("access_token", &a));
            }
            Err(f) => return Err(self.failed("access_token", f)),
        };
        let body: TokenBody = answer.json().map_err(|_| self.malformed(&answer))?;
        let expires_at =
            crate::time::parse_time(&body.expires_at).ok_or_else(|| self.malformed(&answer))?;
        self.count("access_token", "ok");
        Ok(InstallationToken {
            token: Secret::new(body.token),
            expires_at,
            installation_id: id,
            request_id: answer.request_id,
        })
    }

    /// The app's installation on `owner`: an organisation's, else a user's.
    async fn installation(
        &self,
        app: &GitHubApp,
        owner: &str,
        jwt: &str,
    ) -> Result<u64, GitHubError> {
        let key = cache_key(app, owner);
        if let Some(id) = self.installations.get(&key) {
            return Ok(id);
        }
        // `owner` passed the account-name check when the policy compiled: it is a path
        // segment, nothing more.
        let mut last = None;
        for kind in ["orgs", "users"] {
            let url = format!("{}/{kind}/{owner}/installation", app.api_url);
            match self.call("installation", self.http.get(&url), jwt).await {
                Ok(a) if a.status == 200 => {
                    let found: Installation = a.json().map_err(|_| self.malformed(&a))?;
                    self.count("installation", "ok");
                    self.installations.insert(key, found.id);
                    return Ok(found.id);
                }
                Ok(a) if a.status == 404 => last = Some(a),
                Ok(a) => return Err(self.refused("installation", &a)),
                Err(f) => return Err(self.failed("installation", f)),
            }
        }
        let a = last.expect("two lookups were made");
        Err(self.refused("installation", &a))
    }

    async fn call(
        &self,
        name: &'static str,
        request: reqwest::RequestBuilder,
        jwt: &str,
    ) -> Result<Answer, Failure> {
        let request = request
            .bearer_auth(jwt)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        let result = call::send(request).await;
        if let Err(f) = &result {
            tracing::warn!(call = name, failure = %f, "GitHub call failed");
        }
        result
    }

    /// A 4xx that is not a rate limit (those arrive as [`Failure`]s).
    fn refused(&self, call: &'static str, a: &Answer) -> GitHubError {
        self.count(call, "refused");
        tracing::warn!(call, status = a.status, request_id = ?a.request_id, "GitHub refused");
        GitHubError::Refused {
            status: a.status,
            request_id: a.request_id.clone(),
        }
    }

    fn failed(&self, call: &'static str, f: Failure) -> GitHubError {
        let outcome = if f.rate_limited {
            "rate_limited"
        } else {
            "unavailable"
        };
        self.count(call, outcome);
        GitHubError::Unavailable {
            retry_after: f.retry_after,
            status: f.status,
            request_id: f.request_id,
        }
    }

    /// A success whose body is not what GitHub documents: treated as GitHub failing.
    fn malformed(&self, a: &Answer) -> GitHubError {
        tracing::warn!(status = a.status, request_id = ?a.request_id, "GitHub answered an unexpected body");
        GitHubError::Unavailable {
            retry_after: None,
            status: Some(a.status),
            request_id: a.request_id.clone(),
        }
    }

    fn count(&self, call: &'static str, outcome: &'static str) {
        self.metrics.github_call(call, outcome);
    }
}

fn cache_key(app: &GitHubApp, owner: &str) -> (String, u64, String) {
    (app.api_url.clone(), app.app_id, owner.to_ascii_lowercase())
}

/// The token call's body: only the permissions asked, and the repositories when narrowed.
fn token_body(request: &GitHubRequest) -> Value {
    let permissions: Map<String, Value> = request
        .permissions
        .iter()
        .map(|(name, level)| (name.clone(), json!(level.as_str())))
        .collect();
    let mut body = json!({ "permissions": permissions });
    if let Some(repos) = &request.repositories {
        body["repositories"] = json!(repos);
    }
    body
}

/// Hex SHA-256 of a token: what the audit trail keeps to recognise it, never the token.
pub fn token_sha256(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::github::Level;
    use std::collections::BTreeMap;

    #[test]
    fn the_body_asks_for_exactly_the_request() {
        let request = GitHubRequest {
            app: "bot".into(),
            owner: "acme".into(),
            repositories: Some(vec!["api".into()]),
            permissions: BTreeMap::from([("contents".into(), Level::Read)]),
        };
        assert_eq!(
            token_body(&request),
            json!({"repositories": ["api"], "permissions": {"contents": "read"}})
        );
        let all = GitHubRequest {
            repositories: None,
            ..request
        };
        assert_eq!(
            token_body(&all),
            json!({"permissions": {"contents": "read"}})
        );
    }

    #[test]
    fn fingerprints_are_hex_sha256() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
