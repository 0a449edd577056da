//! The token exchange itself (RFC 8693): validate the subject token, choose the policy,
//! mint, audit. Transport-free: routes call [`TokenExchange::exchange`] and map its result.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::github::GitHubClient;
use crate::inbound::{InboundError, Validated, Validator};
use crate::metrics::{ExchangeLabels, Metrics};
use crate::mint::SigningKeys;
use crate::policy::{CurrentPolicies, PolicySet};
use crate::ratelimit::RateLimiter;
use crate::storage::Storage;
use crate::trail::AuditWriter;

mod decide;
mod explain;
mod github;
mod issued;
mod record;
mod trace;

pub use decide::{Decided, decide};
pub use explain::Explanation;
pub use issued::{IssuedClaims, issued_claims};
pub use trace::{PolicyTrace, Trace};

use record::{Inbound, Outcome};

/// RFC 8693 grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// How long a consumed `jti` is remembered past its token's `exp`.
const JTI_RETENTION_PAST_EXP: i64 = 3600;
const _: () = assert!(
    JTI_RETENTION_PAST_EXP > crate::config::MAX_CLOCK_LEEWAY.as_secs() as i64,
    "a jti must be remembered for as long as its token can be accepted"
);

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct ExchangeRequest {
    /// The inbound OIDC token.
    pub subject_token: String,
    /// Requested `aud` of the issued token.
    pub audience: Option<String>,
    /// Requested scopes (`None`: all granted).
    pub scopes: Option<Vec<String>>,
    /// Evaluate only this policy.
    pub policy: Option<String>,
    /// The octo-sts shape: a GitHub target may be named without `github:` (`OWNER/REPO`).
    pub bare_github_target: bool,
}

/// Who asked, and when.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Echoed to the client and recorded in the audit log.
    pub request_id: String,
    /// The peer address.
    pub client_addr: Option<String>,
    /// Unix seconds.
    pub now: i64,
}

/// A token the broker issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Space-separated scopes.
    pub scope: String,
    /// The policy that granted it.
    pub policy: String,
    /// Its `jti` (`None`: a GitHub token, which has none).
    pub jti: Option<String>,
    /// Its `exp`.
    pub exp: i64,
    /// Whether it is a GitHub installation token rather than a broker JWT.
    pub github: bool,
}

/// Why no token was issued. `Display` is safe for clients: it never says which policy nearly
/// matched or what it expected.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The subject token failed validation.
    #[error(transparent)]
    Inbound(#[from] InboundError),
    /// No policy admits the token.
    #[error("no trust policy admits the subject token")]
    NotAdmitted,
    /// `audience` omitted while the admitting policy grants several.
    #[error("audience is required: the admitting policy grants several")]
    AudienceRequired,
    /// The requested audience is not granted.
    #[error("the requested audience cannot be granted")]
    InvalidTarget,
    /// A requested scope is not granted.
    #[error("the requested scope cannot be granted")]
    InvalidScope,
    /// The subject token's `jti` was already exchanged (replay protection).
    #[error("the subject token was already exchanged")]
    Replayed,
    /// Too many exchanges for this subject; retry after the given time.
    #[error("too many exchanges for this subject; retry later")]
    RateLimited(Duration),
    /// Signing or auditing failed: fail closed.
    #[error("the broker cannot issue tokens right now")]
    Unavailable,
    /// GitHub is unreachable, failing or rate limiting; retry after the wait when known.
    #[error("GitHub cannot issue tokens right now; retry later")]
    GitHubUnavailable(Option<Duration>),
    /// GitHub refused the token the policy grants: the app is not installed on the owner,
    /// or may not grant these repositories or permissions.
    #[error(
        "GitHub refused a token for owner {owner:?}: is the GitHub App installed there, with \
         these repositories and permissions?"
    )]
    GitHubRefused {
        /// The owner, as the policy names it (never anything of the app's key).
        owner: String,
    },
}

impl ExchangeError {
    /// Stable reason code for audit and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Inbound(e) => e.code(),
            Self::NotAdmitted => "not_admitted",
            Self::AudienceRequired => "audience_required",
            Self::InvalidTarget => "audience_not_granted",
            Self::InvalidScope => "scope_not_granted",
            Self::Replayed => "token_replayed",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::GitHubUnavailable(_) => "github_unavailable",
            Self::GitHubRefused { .. } => "github_refused",
        }
    }
}

/// Lifetimes of issued tokens.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// When the policy sets no ttl.
    pub default_ttl: Duration,
    /// Never exceeded.
    pub max_ttl: Duration,
}

/// What the exchange is built from.
pub struct ExchangeParts {
    /// The broker's `iss`.
    pub issuer_url: String,
    /// Issuers and policies in force.
    pub policies: Arc<CurrentPolicies>,
    /// Inbound token validation.
    pub validator: Validator,
    /// The keys that sign.
    pub keys: Arc<SigningKeys>,
    /// Where decisions are recorded before they are answered.
    pub audit: AuditWriter,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Where consumed subject-token `jti`s are remembered (replay protection).
    pub replay_store: Arc<dyn Storage>,
    /// Issued token lifetimes.
    pub lifetimes: Lifetimes,
    /// Per (issuer, subject) limit, if any.
    pub per_subject: Option<RateLimiter>,
    /// GitHub's API, for policies that grant GitHub tokens.
    pub github: Arc<GitHubClient>,
}

/// The token exchange.
pub struct TokenExchange {
    issuer_url: String,
    policies: Arc<CurrentPolicies>,
    validator: Validator,
    keys: Arc<SigningKeys>,
    audit: AuditWriter,
    metrics: Arc<Metrics>,
    replay_store: Arc<dyn Storage>,
    lifetimes: Lifetimes,
    per_subject: Option<RateLimiter>,
    github: Arc<GitHubClient>,
}

impl TokenExchange {
    /// The exchange over `parts`.
    pub fn new(parts: ExchangeParts) -> Self {
        Self {
            issuer_url: parts.issuer_url,
            policies: parts.policies,
            validator: parts.validator,
            keys: parts.keys,
            audit: parts.audit,
            metrics: parts.metrics,
            replay_store: parts.replay_store,
            lifetimes: parts.lifetimes,
            per_subject: parts.per_subject,
            github: parts.github,
        }
    }

    /// Runs one exchange and records it in the audit log before returning. A token whose
    /// audit record cannot be written is never returned.
    pub async fn exchange(
        &self,
        req: &ExchangeRequest,
        ctx: &RequestContext,
    ) -> Result<Issued, ExchangeError> {
        let started = std::time::Instant::now();
        let mut outcome = self.run(&self.policies.get(), req, ctx).await;
        let labels = ExchangeLabels {
            result: if outcome.result.is_ok() {
                "allow"
            } else {
                "deny"
            },
            reason: outcome.reason().to_owned(),
            policy: outcome.policy().unwrap_or_default().to_owned(),
        };
        if let Err(e) = self.audit.record(outcome.record(req, ctx)).await {
            tracing::error!(request_id = %ctx.request_id, error = %e, "audit write failed; failing closed");
            return Err(ExchangeError::Unavailable);
        }
        self.metrics
            .exchange(&labels, started.elapsed().as_secs_f64());
        tracing::info!(
            request_id = %ctx.request_id,
            decision = labels.result,
            reason = %labels.reason,
            policy = %labels.policy,
            "exchange"
        );
        outcome.result
    }

    /// Every step of the exchange; the outcome says how it ended and what to record.
    async fn run(&self, set: &PolicySet, req: &ExchangeRequest, ctx: &RequestContext) -> Outcome {
        let token = match self
            .validator
            .validate(set, &req.subject_token, ctx.now)
            .await
        {
            Ok(t) => t,
            Err(e) => return Outcome::refused(Inbound::refused(&e), e.into()),
        };
        let mut inbound = Inbound::validated(&token);
        if let Err(wait) = self.check_subject_rate(&token) {
            return Outcome::refused(inbound, ExchangeError::RateLimited(wait));
        }
        inbound.judged(&token);
        let decided = match decide(set, &token, req, None) {
            Ok(d) => d,
            Err(e) => {
                // The slow path, only on denial: record why, per policy, for admins, within
                // the record's bounds (explain recomputes the complete trace on demand).
                let mut trace = Trace::bounded();
                let _ = decide(set, &token, req, Some(&mut trace));
                return Outcome {
                    result: Err(e),
                    inbound,
                    denying_policy: trace.denying_policy().map(str::to_owned),
                    trace: Some(trace),
                    github: None,
                };
            }
        };
        let (result, github) = self.issue(&token, &decided, ctx.now).await;
        Outcome {
            result,
            inbound,
            denying_policy: Some(decided.policy.name.clone()),
            trace: None,
            github,
        }
    }

    fn check_subject_rate(&self, token: &Validated) -> Result<(), Duration> {
        let Some(limiter) = &self.per_subject else {
            return Ok(());
        };
        let key = format!("{}\n{}", token.issuer.url, token.subject);
        limiter.check(&key).inspect_err(|_| {
            self.metrics.rate_limited("subject");
        })
    }

    /// Issues the token a policy decided on, once the subject token is current and (with
    /// replay protection) its `jti` unused: a broker JWT, or a GitHub token. Returns with it
    /// what the audit record says of a GitHub grant.
    async fn issue(
        &self,
        token: &Validated,
        decided: &Decided,
        now: i64,
    ) -> (Result<Issued, ExchangeError>, Option<Value>) {
        let github = decided.github.as_ref();
        let checked = self.check_current(token, now).await;
        match (checked, github) {
            (Err(e), _) => (Err(e), github.map(github::requested)),
            (Ok(()), None) => (self.mint(token, decided, now), None),
            (Ok(()), Some(request)) => {
                let (result, detail) = self.issue_github(decided, request, now).await;
                (result, Some(detail))
            }
        }
    }

    async fn check_current(&self, token: &Validated, now: i64) -> Result<(), ExchangeError> {
        if token.exp <= now {
            // Accepted within the clock leeway, but an issued token may not outlive it, and
            // one that is expired at birth is of no use.
            return Err(InboundError::Claims("is expired").into());
        }
        self.consume_jti(token).await
    }

    /// With replay protection, a `jti` is exchanged once; it is remembered past the token's
    /// `exp` by an hour, longer than any clock leeway could still accept it (the leeway is
    /// at most [`crate::config::MAX_CLOCK_LEEWAY`]).
    async fn consume_jti(&self, token: &Validated) -> Result<(), ExchangeError> {
        if !token.issuer.replay_protection {
            return Ok(());
        }
        let Some(jti) = &token.jti else {
            return Err(ExchangeError::Replayed);
        };
        match self
            .replay_store
            .consume_jti(&token.issuer.url, jti, token.exp + JTI_RETENTION_PAST_EXP)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(ExchangeError::Replayed),
            Err(e) => {
                tracing::error!(error = %e, "replay store unavailable; failing closed");
                Err(ExchangeError::Unavailable)
            }
        }
    }

    fn mint(
        &self,
        token: &Validated,
        decided: &Decided,
        now: i64,
    ) -> Result<Issued, ExchangeError> {
        let jti = crate::ids::random().to_string();
        let IssuedClaims { claims, exp, scope } =
            issued_claims(&self.issuer_url, self.lifetimes, token, decided, now, &jti);
        let access_token = self
            .keys
            .current()
            .active
            .sign_jwt(&Value::Object(claims), "at+jwt")
            .map_err(|e| {
                tracing::error!(error = %e, "signing failed");
                ExchangeError::Unavailable
            })?;
        Ok(Issued {
            access_token,
            expires_in: exp - now,
            scope,
            policy: decided.policy.name.clone(),
            jti: Some(jti),
            exp,
            github: false,
        })
    }
}
