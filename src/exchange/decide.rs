//! Choosing the policy for a validated token, and what it grants this request. Pure: the
//! exchange, explain and the audit trace of a denial all run this same code.

use std::sync::Arc;

use super::{ExchangeError, ExchangeRequest, Trace};
use crate::inbound::Validated;
use crate::policy::github::{AUDIENCE_PREFIX, GitHubGrant, GitHubRequest, Refusal};
use crate::policy::trust::Rendered;
use crate::policy::{Check, PolicySet, TrustPolicy};

/// The policy chosen and what it grants this request.
#[derive(Debug)]
pub struct Decided {
    /// The policy.
    pub policy: Arc<TrustPolicy>,
    /// The issued `aud`.
    pub audience: String,
    /// The issued scopes.
    pub scopes: Vec<String>,
    /// Issued subject (unprefixed) and mapped claims.
    pub rendered: Rendered,
    /// For a `github` grant: what GitHub is asked for (`audience` is then the target as
    /// asked, `github:OWNER[/REPO]`, and `scopes` the permissions as `NAME:LEVEL`).
    pub github: Option<GitHubRequest>,
}

/// Chooses the policy for a validated token. With `policy`, only that one is evaluated;
/// otherwise policies of the token's issuer are tried in name order and the first that
/// admits the token and can grant the audience and scopes wins. With `trace`, checks are
/// recorded.
pub fn decide(
    set: &PolicySet,
    token: &Validated,
    req: &ExchangeRequest,
    mut trace: Option<&mut Trace>,
) -> Result<Decided, ExchangeError> {
    let issuer = &token.issuer.name;
    let candidates: Box<dyn Iterator<Item = &Arc<TrustPolicy>>> = match &req.policy {
        Some(name) => match set.policy(name) {
            Some(p) if &p.issuer == issuer => Box::new(std::iter::once(p)),
            _ => Box::new(std::iter::empty()),
        },
        // Explanations show every policy of the issuer; the exchange needs only those
        // the index says could admit the token (the same first match either way).
        None if trace.as_ref().is_some_and(|t| t.every_policy()) => {
            Box::new(set.policies_for(issuer).iter())
        }
        None => set.candidates(issuer, &token.claims),
    };
    let mut failure = None;
    for policy in candidates {
        let mut checks = trace
            .as_ref()
            .filter(|t| t.wants_checks())
            .map(|_| Vec::new());
        let outcome = judge(policy, token, req, checks.as_mut());
        if let Some(t) = trace.as_deref_mut() {
            let code = match &outcome {
                Ok(_) => "selected",
                Err(Some(e)) => e.code(),
                Err(None) => "not_admitted",
            };
            t.record(&policy.name, code, checks);
        }
        match outcome {
            Ok(decided) => return Ok(decided),
            // A policy that could grant the audience asked for, but not the rest, says more
            // than one that grants other audiences (a GitHub grant beside broker grants).
            Err(Some(e)) => match failure {
                None | Some(ExchangeError::InvalidTarget) => failure = Some(e),
                Some(_) => {}
            },
            Err(None) => {}
        }
    }
    Err(failure.unwrap_or(ExchangeError::NotAdmitted))
}

/// One policy against one request: `Err(None)` when it does not admit the token,
/// `Err(Some(_))` when it admits it but cannot grant what was asked.
fn judge(
    policy: &Arc<TrustPolicy>,
    token: &Validated,
    req: &ExchangeRequest,
    mut checks: Option<&mut Vec<Check>>,
) -> Result<Decided, Option<ExchangeError>> {
    if !policy.admits(&token.claims, checks.as_deref_mut()) {
        return Err(None);
    }
    let rendered = policy.render(&token.claims, checks).ok_or(None)?;
    let grant = &policy.grant;
    if let Some(github) = &grant.github {
        return judge_github(policy, github, req, rendered).map_err(Some);
    }
    let audience = match &req.audience {
        Some(a) if grant.audience.contains(a) => a.clone(),
        Some(_) => return Err(Some(ExchangeError::InvalidTarget)),
        None if grant.audience.len() == 1 => grant.audience[0].clone(),
        None => return Err(Some(ExchangeError::AudienceRequired)),
    };
    let scopes = match &req.scopes {
        None => grant.scopes.clone(),
        Some(asked) if asked.iter().all(|s| grant.scopes.contains(s)) => asked.clone(),
        Some(_) => return Err(Some(ExchangeError::InvalidScope)),
    };
    Ok(Decided {
        policy: policy.clone(),
        audience,
        scopes,
        rendered,
        github: None,
    })
}

/// A policy that grants a GitHub token: the audience names the target (`github:OWNER` or
/// `github:OWNER/REPO`; in the octo-sts shape also without the prefix), the scopes narrow
/// the permissions.
fn judge_github(
    policy: &Arc<TrustPolicy>,
    grant: &GitHubGrant,
    req: &ExchangeRequest,
    rendered: Rendered,
) -> Result<Decided, ExchangeError> {
    let target = match req.audience.as_deref() {
        None => None,
        Some(a) => match a.strip_prefix(AUDIENCE_PREFIX) {
            Some(target) => Some(target),
            None if req.bare_github_target => Some(a),
            None => return Err(ExchangeError::InvalidTarget),
        },
    };
    let request = grant
        .narrow(target, req.scopes.as_deref())
        .map_err(|refusal| match refusal {
            Refusal::Target => ExchangeError::InvalidTarget,
            Refusal::Scope => ExchangeError::InvalidScope,
        })?;
    let audience = match &request.repositories {
        Some(repos) if repos.len() == 1 && target.is_some_and(|t| t.contains('/')) => {
            format!("{AUDIENCE_PREFIX}{}/{}", request.owner, repos[0])
        }
        _ => format!("{AUDIENCE_PREFIX}{}", request.owner),
    };
    Ok(Decided {
        policy: policy.clone(),
        audience,
        scopes: request.scopes(),
        rendered,
        github: Some(request),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::policy::github::Level;
    use crate::policy::{GitHubAppDoc, IssuerDoc, Limits, TrustPolicyDoc};

    /// An issuer, one app, a policy granting a broker token and one granting a GitHub token,
    /// both admitting the same token.
    fn set() -> PolicySet {
        let app: GitHubAppDoc =
            serde_json::from_value(json!({"name": "bot", "app_id": 1, "private_key_env": "K"}))
                .unwrap();
        let issuer: IssuerDoc = serde_json::from_value(
            json!({"name": "ci", "url": "https://ci.example", "audiences": ["sts"]}),
        )
        .unwrap();
        let policy = |name: &str, grant: Value| -> TrustPolicyDoc {
            serde_json::from_value(
                json!({"name": name, "issuer": "ci", "subject": "s", "grant": grant}),
            )
            .unwrap()
        };
        let policies = [
            policy(
                "a-jwt",
                json!({"audience": "https://api", "scopes": ["read"]}),
            ),
            policy(
                "b-github",
                json!({"github": {"app": "bot", "owner": "acme", "repositories": ["api", "web"],
                                  "permissions": {"contents": "write", "issues": "read"}}}),
            ),
        ];
        let limits = Limits {
            max_ttl: Duration::from_secs(3600),
            allow_insecure_loopback_issuers: false,
            read_app_keys: false,
        };
        PolicySet::compile_with_apps(&[app], &[issuer], &policies, &limits).unwrap()
    }

    fn decide_for(set: &PolicySet, req: ExchangeRequest) -> Result<Decided, ExchangeError> {
        let token = Validated {
            issuer: set.issuer("ci").unwrap().clone(),
            claims: json!({"sub": "s"}).as_object().unwrap().clone(),
            payload: None,
            subject: "s".into(),
            jti: None,
            exp: i64::MAX,
        };
        decide(set, &token, &req, None)
    }

    fn asking(audience: &str, scopes: Option<&[&str]>) -> ExchangeRequest {
        ExchangeRequest {
            audience: Some(audience.into()),
            scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
            ..ExchangeRequest::default()
        }
    }

    #[test]
    fn a_github_audience_chooses_the_github_grant_and_narrows_it() {
        let set = set();
        let d = decide_for(&set, asking("github:acme/web", Some(&["issues:read"]))).unwrap();
        assert_eq!(d.policy.name, "b-github");
        assert_eq!(d.audience, "github:acme/web");
        assert_eq!(d.scopes, ["issues:read"]);
        let github = d.github.unwrap();
        assert_eq!(github.repositories, Some(vec!["web".to_owned()]));
        assert_eq!(
            github.permissions,
            BTreeMap::from([("issues".to_owned(), Level::Read)])
        );
        // A broker audience goes to the policy that grants it, as before.
        let jwt = decide_for(&set, asking("https://api", None)).unwrap();
        assert_eq!(jwt.policy.name, "a-jwt");
        assert!(jwt.github.is_none());
    }

    #[test]
    fn what_no_grant_holds_is_refused() {
        let set = set();
        let refused = |req| decide_for(&set, req).err().map(|e| e.code());
        assert_eq!(
            refused(asking("github:acme/other", None)),
            Some("audience_not_granted")
        );
        assert_eq!(
            refused(asking("github:acme", Some(&["issues:write"]))),
            Some("scope_not_granted")
        );
        // Without `github:` only in the octo-sts shape.
        assert_eq!(
            refused(asking("acme/api", None)),
            Some("audience_not_granted")
        );
        let octo = ExchangeRequest {
            bare_github_target: true,
            policy: Some("b-github".into()),
            ..asking("acme/api", None)
        };
        let d = decide_for(&set, octo).unwrap();
        assert_eq!(d.github.unwrap().repositories, Some(vec!["api".to_owned()]));
    }
}
