//! Where the CI client finds the OIDC token it exchanges, in order: an explicit file (or
//! stdin), an environment variable named by `--token-env` (GitLab CI `id_tokens:`), the
//! GitHub Actions ID-token request, then a Kubernetes projected service-account token.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Kubernetes mounts a service account's projected token here by default.
pub const KUBERNETES_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Larger than any OIDC token the broker accepts (16 KiB), so a wrong file fails clearly.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// How to find the subject token.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `--token-file` (`-`: stdin).
    pub file: Option<String>,
    /// `--token-env`: a variable holding the token.
    pub env: Option<String>,
    /// The audience to ask GitHub Actions for.
    pub id_token_audience: String,
    /// The Kubernetes token path.
    pub kubernetes_path: PathBuf,
}

/// A token and where it came from (for messages).
#[derive(Debug)]
pub struct SubjectToken {
    /// The token.
    pub token: String,
    /// `file …`, `stdin`, `$VAR`, `GitHub Actions`, `Kubernetes`.
    pub origin: String,
}

/// Why no token could be had; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Nothing to read from.
    #[error(
        "no OIDC token found: pass --token-file FILE (or - for stdin), --token-env VAR (GitLab \
         CI id_tokens), run in GitHub Actions with `permissions: id-token: write`, or in a \
         Kubernetes pod with a projected service-account token"
    )]
    NoSource,
    /// GitHub Actions without the permission.
    #[error(
        "running in GitHub Actions but ACTIONS_ID_TOKEN_REQUEST_URL is not set: add \
         `permissions: id-token: write` to the job (or workflow)"
    )]
    GithubPermission,
    /// A source exists but failed.
    #[error("{0}")]
    Failed(String),
}

impl Sources {
    /// Finds the token, trying each source in order.
    pub async fn find(&self, client: &reqwest::Client) -> Result<SubjectToken, SourceError> {
        if let Some(file) = &self.file {
            return read_file(file);
        }
        if let Some(var) = &self.env {
            return from_env(var);
        }
        let url = non_empty_env("ACTIONS_ID_TOKEN_REQUEST_URL");
        let bearer = non_empty_env("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
        match (url, bearer) {
            (Some(url), Some(bearer)) => {
                return github_actions(client, &url, &bearer, &self.id_token_audience).await;
            }
            _ if non_empty_env("GITHUB_ACTIONS").as_deref() == Some("true") => {
                return Err(SourceError::GithubPermission);
            }
            _ => {}
        }
        if self.kubernetes_path.is_file() {
            let mut found = read_path(&self.kubernetes_path)?;
            found.origin = format!("Kubernetes ({})", self.kubernetes_path.display());
            return Ok(found);
        }
        Err(SourceError::NoSource)
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn read_file(file: &str) -> Result<SubjectToken, SourceError> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_TOKEN_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| SourceError::Failed(format!("cannot read the token from stdin: {e}")))?;
        return token_from(text, "stdin".into());
    }
    read_path(Path::new(file))
}

fn read_path(path: &Path) -> Result<SubjectToken, SourceError> {
    let cannot =
        |e: std::io::Error| SourceError::Failed(format!("cannot read {}: {e}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_TOKEN_BYTES)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    token_from(text, format!("file {}", path.display()))
}

fn from_env(var: &str) -> Result<SubjectToken, SourceError> {
    let value = std::env::var(var).map_err(|_| {
        SourceError::Failed(format!(
            "${var} is not set: in GitLab CI declare it under the job's `id_tokens:` with the \
             audience the broker expects (`aud:`)"
        ))
    })?;
    token_from(value, format!("${var}"))
}

fn token_from(text: String, origin: String) -> Result<SubjectToken, SourceError> {
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(SourceError::Failed(format!(
            "the token from {origin} is empty"
        )));
    }
    if token.split('.').count() != 3 {
        return Err(SourceError::Failed(format!(
            "the token from {origin} is not a JWT (header.payload.signature)"
        )));
    }
    Ok(SubjectToken { token, origin })
}

#[derive(Deserialize)]
struct GithubAnswer {
    value: String,
}

/// GitHub Actions: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with the request token as
/// bearer; the answer is `{"value": "<jwt>"}`.
async fn github_actions(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    audience: &str,
) -> Result<SubjectToken, SourceError> {
    let mut url = url::Url::parse(url)
        .map_err(|_| SourceError::Failed("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL".into()))?;
    url.query_pairs_mut().append_pair("audience", audience);
    let failed =
        |why: String| SourceError::Failed(format!("GitHub Actions ID-token request: {why}"));
    let response = client
        .get(url)
        .bearer_auth(bearer)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!(
            "answered {status}; check the job has `permissions: id-token: write`"
        )));
    }
    let answer: GithubAnswer = response
        .json()
        .await
        .map_err(|e| failed(format!("unexpected answer: {e}")))?;
    token_from(answer.value, "GitHub Actions".into())
}
