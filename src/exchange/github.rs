//! Issuing a GitHub installation token for a decided GitHub grant: the one step of an
//! exchange that calls GitHub, reached only once a policy admitted a validated token.

use serde_json::{Value, json};

use super::{Decided, ExchangeError, Issued, TokenExchange};
use crate::audit::{IDENTIFIER_BYTES, clip};
use crate::github::{GitHubError, token_sha256};
use crate::policy::github::GitHubRequest;

/// What the audit record says of a GitHub grant before GitHub answers.
pub(super) fn requested(request: &GitHubRequest) -> Value {
    json!({
        "app": request.app,
        "owner": request.owner,
        "repositories": request.repositories,
        "permissions": request.permissions,
    })
}

impl TokenExchange {
    /// Asks GitHub for the token `request` describes; returns the outcome and the audit
    /// record's `github` detail (the token's SHA-256, never the token).
    pub(super) async fn issue_github(
        &self,
        decided: &Decided,
        request: &GitHubRequest,
        now: i64,
    ) -> (Result<Issued, ExchangeError>, Value) {
        let mut detail = requested(request);
        let Some(grant) = decided.policy.grant.github.as_ref() else {
            return (Err(ExchangeError::Unavailable), detail);
        };
        let answer = self
            .github
            .installation_token(&grant.app, request, now)
            .await;
        let token = match answer {
            Ok(t) => t,
            Err(e) => {
                record_failure(&mut detail, &e);
                return (Err(to_exchange_error(e, &request.owner)), detail);
            }
        };
        detail["installation_id"] = json!(token.installation_id);
        detail["token_sha256"] = json!(token_sha256(token.token.expose()));
        detail["github_request_id"] = json!(request_id(token.request_id.as_deref()));
        let issued = Issued {
            access_token: token.token.expose().to_owned(),
            expires_in: (token.expires_at - now).max(0),
            scope: decided.scopes.join(" "),
            policy: decided.policy.name.clone(),
            jti: None,
            exp: token.expires_at,
            github: true,
        };
        (Ok(issued), detail)
    }
}

fn record_failure(detail: &mut Value, e: &GitHubError) {
    let (status, id) = match e {
        GitHubError::Unavailable {
            status, request_id, ..
        } => (*status, request_id.as_deref()),
        GitHubError::Refused { status, request_id } => (Some(*status), request_id.as_deref()),
        GitHubError::NoKey => (None, None),
    };
    detail["github_status"] = json!(status);
    detail["github_request_id"] = json!(request_id(id));
}

/// GitHub's request id, within the record's bounds (it is a header GitHub chose).
fn request_id(id: Option<&str>) -> Option<String> {
    id.map(|i| clip(i, IDENTIFIER_BYTES).into_owned())
}

fn to_exchange_error(e: GitHubError, owner: &str) -> ExchangeError {
    match e {
        GitHubError::Unavailable { retry_after, .. } => {
            ExchangeError::GitHubUnavailable(retry_after)
        }
        GitHubError::Refused { .. } => ExchangeError::GitHubRefused {
            owner: owner.to_owned(),
        },
        GitHubError::NoKey => ExchangeError::Unavailable,
    }
}
