//! The token exchange itself (RFC 8693): validate the subject token, choose the policy,
//! mint, audit. Transport-free: routes call [`Broker::exchange`] and map its result.

use crate::metrics::{ExchangeLabels, LimitLabels};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::audit::{
    AUDIENCE_BYTES, AuditEvent, Decision, IDENTIFIER_BYTES, SCOPE_BYTES, SCOPES, SUBJECT_BYTES,
    clip,
};
use crate::broker::Broker;
use crate::inbound::{InboundError, Validated};
use crate::policy::trust::Rendered;
use crate::policy::{Check, PolicySet, TrustPolicy};

mod trace;

/// How long a consumed `jti` is remembered past its token's `exp`.
const JTI_RETENTION_PAST_EXP: i64 = 3600;
const _: () = assert!(
    JTI_RETENTION_PAST_EXP > crate::config::MAX_CLOCK_LEEWAY.as_secs() as i64,
    "a jti must be remembered for as long as its token can be accepted"
);

pub use trace::{PolicyTrace, Trace};

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
        }
    }
}

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
}

/// Chooses the policy for a validated token. With `policy`, only that one is evaluated;
/// otherwise policies of the token's issuer are tried in name order and the first that
/// admits the token and can grant the audience and scopes wins. With `trace`, checks are
/// recorded (the admin explanation and the audit record of a denial run this same code).
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
            Err(Some(e)) => {
                failure.get_or_insert(e);
            }
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
    })
}

/// What the client asked for, as recorded: within the record's bounds, since a request
/// body may hold up to 64 KiB of audience and scopes.
fn request_detail(req: &ExchangeRequest) -> Value {
    let audience = req.audience.as_deref().map(|a| clip(a, AUDIENCE_BYTES));
    let scope = req.scopes.as_ref().map(|scopes| {
        let mut kept: Vec<Value> = scopes
            .iter()
            .take(SCOPES)
            .map(|s| clip(s, SCOPE_BYTES).into())
            .collect();
        if scopes.len() > SCOPES {
            kept.push(format!("…[truncated {} scopes]", scopes.len() - SCOPES).into());
        }
        kept
    });
    let policy = req.policy.as_deref().map(|p| clip(p, IDENTIFIER_BYTES));
    json!({"audience": audience, "scope": scope, "policy": policy})
}

impl Broker {
    /// Runs one exchange and records it in the audit log before returning. A token whose
    /// audit record cannot be written is never returned.
    pub async fn exchange(
        &self,
        req: &ExchangeRequest,
        ctx: &RequestContext,
    ) -> Result<Issued, ExchangeError> {
        let started = std::time::Instant::now();
        let set = self.policies.load_full();
        let mut event = AuditEvent {
            request_id: ctx.request_id.clone(),
            time: ctx.now,
            kind: "exchange".into(),
            decision: Some(Decision::Deny),
            reason: String::new(),
            client_addr: ctx.client_addr.clone(),
            policy: None,
            inbound_iss: None,
            inbound_sub: None,
            inbound_jti: None,
            issued_jti: None,
            issued_exp: None,
            detail: request_detail(req),
        };
        let result = self.try_exchange(&set, req, ctx, &mut event).await;
        match &result {
            Ok(issued) => {
                event.decision = Some(Decision::Allow);
                event.reason = "issued".into();
                event.policy = Some(issued.policy.clone());
            }
            Err(e) => event.reason = e.code().into(),
        }
        let labels = ExchangeLabels {
            result: event.decision.map_or("deny", |d| d.as_str()),
            reason: event.reason.clone(),
            policy: event.policy.clone().unwrap_or_default(),
        };
        let (decision, reason) = (labels.result, labels.reason.clone());
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(request_id = %ctx.request_id, error = %e, "audit write failed; failing closed");
            return Err(ExchangeError::Unavailable);
        }
        self.metrics.exchanges.get_or_create(&labels).inc();
        self.metrics
            .exchange_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            request_id = %ctx.request_id,
            decision,
            reason = %reason,
            policy = %labels.policy,
            "exchange"
        );
        result
    }

    async fn try_exchange(
        &self,
        set: &PolicySet,
        req: &ExchangeRequest,
        ctx: &RequestContext,
        event: &mut AuditEvent,
    ) -> Result<Issued, ExchangeError> {
        let token = match self
            .validator
            .validate(set, &req.subject_token, ctx.now)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                if let InboundError::UnknownIssuer { iss } = &e {
                    event.inbound_iss = iss
                        .as_deref()
                        .map(|i| clip(i, IDENTIFIER_BYTES).into_owned());
                }
                return Err(e.into());
            }
        };
        event.inbound_iss = Some(token.issuer.url.clone());
        event.inbound_sub = Some(clip(&token.subject, SUBJECT_BYTES).into_owned());
        event.inbound_jti = token
            .jti
            .as_deref()
            .map(|j| clip(j, IDENTIFIER_BYTES).into_owned());
        if let Some(limiter) = &self.rate_limits.per_subject {
            let key = format!("{}\n{}", token.issuer.url, token.subject);
            limiter.check(&key).map_err(|wait| {
                self.metrics
                    .rate_limited
                    .get_or_create(&LimitLabels { limit: "subject" })
                    .inc();
                ExchangeError::RateLimited(wait)
            })?;
        }
        let decided = match decide(set, &token, req, None) {
            Ok(d) => d,
            Err(e) => {
                // The slow path, only on denial: record why, per policy, for admins, within
                // the record's bounds (explain recomputes the complete trace on demand).
                let mut trace = Trace::bounded();
                let _ = decide(set, &token, req, Some(&mut trace));
                event.policy = trace.denying_policy().map(str::to_owned);
                if trace.omitted() > 0 {
                    event.detail["trace_omitted"] = trace.omitted().into();
                }
                event.detail["trace"] = serde_json::to_value(trace.policies()).unwrap_or_default();
                return Err(e);
            }
        };
        event.policy = Some(decided.policy.name.clone());
        if token.exp <= ctx.now {
            // Accepted within the clock leeway, but an issued token may not outlive it, and
            // one that is expired at birth is of no use.
            return Err(InboundError::Claims("is expired").into());
        }
        self.consume_jti(&token).await?;
        let (issued, jti, exp) = self.mint(&token, &decided, ctx.now)?;
        event.issued_jti = Some(jti);
        event.issued_exp = Some(exp);
        Ok(issued)
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
            .store
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
    ) -> Result<(Issued, String, i64), ExchangeError> {
        let ttl: Duration = decided
            .policy
            .grant
            .ttl
            .unwrap_or(self.lifetimes.default_ttl)
            .min(self.lifetimes.max_ttl);
        // Never past the subject token's own exp: an exchange must not extend a credential.
        let exp = (now + ttl.as_secs() as i64).min(token.exp);
        let jti = uuid::Uuid::new_v4().to_string();
        let scope = decided.scopes.join(" ");
        let mut claims: Map<String, Value> = decided.rendered.claims.clone();
        let standard = json!({
            "iss": self.issuer_url,
            "sub": format!("{}{}", token.issuer.subject_prefix, decided.rendered.subject),
            "aud": decided.audience,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": jti,
            "scope": scope,
            "client_id": decided.policy.name,
            "act": {"iss": token.issuer.url, "sub": token.subject},
        });
        if let Value::Object(std) = standard {
            claims.extend(std);
        }
        let keys = self.keys.load();
        let access_token = keys
            .active
            .sign_jwt(&Value::Object(claims), "at+jwt")
            .map_err(|e| {
                tracing::error!(error = %e, "signing failed");
                ExchangeError::Unavailable
            })?;
        let issued = Issued {
            access_token,
            expires_in: exp - now,
            scope,
            policy: decided.policy.name.clone(),
        };
        Ok((issued, jti, exp))
    }
}
