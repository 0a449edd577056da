//! Why was this token allowed or denied? The same validation and the same `decide` as
//! `/token`, with every check recorded; nothing is issued, consumed or rate limited.

use serde::Serialize;
use serde_json::{Value, json};

use super::{ExchangeError, ExchangeRequest, PolicyTrace, TokenExchange, Trace, decide};
use crate::policy::github::GitHubRequest;

/// The decision and its reasons.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Reason code (as in the audit log).
    pub reason: &'static str,
    /// A sentence.
    pub message: String,
    /// The policy that would issue, when allowed.
    pub policy: Option<String>,
    /// The validated inbound token's issuer and subject, when it validated.
    pub inbound: Option<Value>,
    /// Every candidate policy with every check.
    pub policies: Vec<PolicyTrace>,
    /// For a GitHub grant: what GitHub would be asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubRequest>,
}

impl TokenExchange {
    /// Explains how an exchange of `req` would be decided at `now`.
    pub async fn explain(&self, req: &ExchangeRequest, now: i64) -> Explanation {
        let set = self.policies.get();
        let token = match self.validator.validate(&set, &req.subject_token, now).await {
            Ok(t) => t,
            Err(e) => {
                let e = ExchangeError::from(e);
                return Explanation {
                    decision: "deny",
                    reason: e.code(),
                    message: e.to_string(),
                    policy: None,
                    inbound: None,
                    policies: Vec::new(),
                    github: None,
                };
            }
        };
        let mut trace = Trace::complete();
        let result = decide(&set, &token, req, Some(&mut trace));
        let policies = trace.into_policies();
        let inbound = Some(
            json!({"iss": token.issuer.url, "issuer": token.issuer.name, "sub": token.subject, "jti": token.jti}),
        );
        match result {
            Ok(d) => Explanation {
                decision: "allow",
                reason: "issued",
                message: match &d.github {
                    Some(g) => format!(
                        "policy {:?} grants a GitHub token of app {:?} on owner {:?}",
                        d.policy.name, g.app, g.owner
                    ),
                    None => format!(
                        "policy {:?} grants audience {:?}",
                        d.policy.name, d.audience
                    ),
                },
                policy: Some(d.policy.name.clone()),
                inbound,
                policies,
                github: d.github,
            },
            Err(e) => Explanation {
                decision: "deny",
                reason: e.code(),
                message: e.to_string(),
                policy: None,
                inbound,
                policies,
                github: None,
            },
        }
    }
}
