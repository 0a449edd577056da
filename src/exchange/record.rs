//! An exchange's audit record, built once from what the exchange found out: the request, the
//! inbound token (as far as it was verified), the deciding policy and, for a denial, a
//! bounded trace. Every field is within the record's bounds: anyone holding a token of a
//! registered issuer can cause a denial.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ExchangeError, ExchangeRequest, Issued, RequestContext, Trace};
use crate::audit::{
    AUDIENCE_BYTES, AuditEvent, AuditKind, Decision, IDENTIFIER_BYTES, KeptClaims, SCOPE_BYTES,
    SCOPES, SUBJECT_BYTES, claims, clip,
};
use crate::inbound::{InboundError, Validated};

/// The inbound token as far as it was verified.
#[derive(Debug, Default)]
pub(super) struct Inbound {
    /// Its `iss`: as claimed when the issuer is not registered, else the issuer's URL.
    iss: Option<String>,
    /// `sub` and `jti`, once the token validated.
    sub: Option<String>,
    jti: Option<String>,
    /// The validated claims, once a policy is about to judge them (what a preview decides
    /// again); bounded. As the token's text when that fits, else as kept from the parsed set.
    claims: Option<KeptClaims>,
    claims_text: Option<Box<RawValue>>,
}

impl Inbound {
    /// What a refused token tells: only the issuer it claimed, when unregistered.
    pub(super) fn refused(error: &InboundError) -> Self {
        let iss = match error {
            InboundError::UnknownIssuer { iss } => iss.as_deref(),
            _ => None,
        };
        Self {
            iss: iss.map(|i| clip(i, IDENTIFIER_BYTES).into_owned()),
            ..Self::default()
        }
    }

    /// A validated token.
    pub(super) fn validated(token: &Validated) -> Self {
        Self {
            iss: Some(token.issuer.url.clone()),
            sub: Some(clip(&token.subject, SUBJECT_BYTES).into_owned()),
            jti: token
                .jti
                .as_deref()
                .map(|j| clip(j, IDENTIFIER_BYTES).into_owned()),
            claims: None,
            claims_text: None,
        }
    }

    /// Keeps the token's claims: it passed every check before policy judgement.
    pub(super) fn judged(&mut self, token: &Validated) {
        match token.payload.as_deref().and_then(claims::keep_text) {
            Some(text) => self.claims_text = Some(text),
            None => self.claims = Some(claims::keep(&token.claims)),
        }
    }
}

/// How an exchange ended, and what its record says.
pub(super) struct Outcome {
    pub(super) result: Result<Issued, ExchangeError>,
    pub(super) inbound: Inbound,
    /// For a denial: the policy that admitted the token but could not grant the request.
    pub(super) denying_policy: Option<String>,
    /// For a denial after validation: why each candidate policy said no.
    pub(super) trace: Option<Trace>,
    /// For a GitHub grant: what was asked of GitHub and what it answered (never the token).
    pub(super) github: Option<Value>,
}

impl Outcome {
    /// Refused before any policy looked at it.
    pub(super) fn refused(inbound: Inbound, error: ExchangeError) -> Self {
        Self {
            result: Err(error),
            inbound,
            denying_policy: None,
            trace: None,
            github: None,
        }
    }

    /// The decision's reason code (`issued`, `not_admitted`, …).
    pub(super) fn reason(&self) -> &'static str {
        match &self.result {
            Ok(_) => "issued",
            Err(e) => e.code(),
        }
    }

    /// The policy the record is filed under.
    pub(super) fn policy(&self) -> Option<&str> {
        match &self.result {
            Ok(issued) => Some(&issued.policy),
            Err(_) => self.denying_policy.as_deref(),
        }
    }

    /// The audit record. The kept claims move into it (they are not needed after).
    pub(super) fn record(&mut self, req: &ExchangeRequest, ctx: &RequestContext) -> AuditEvent {
        let mut detail = request_detail(req);
        if let Some(kept) = self.inbound.claims.take() {
            detail["claims"] = kept.claims;
            if let Some(dropped) = kept.dropped {
                detail["claims_dropped"] = dropped;
            }
        }
        if let Some(trace) = &self.trace {
            if trace.omitted() > 0 {
                detail["trace_omitted"] = trace.omitted().into();
            }
            detail["trace"] = serde_json::to_value(trace.policies()).unwrap_or_default();
        }
        if let Some(github) = &self.github {
            detail["github"] = github.clone();
        }
        let issued = self.result.as_ref().ok();
        AuditEvent {
            request_id: ctx.request_id.clone(),
            time: ctx.now,
            kind: AuditKind::Exchange,
            decision: Some(match issued {
                Some(_) => Decision::Allow,
                None => Decision::Deny,
            }),
            reason: self.reason().into(),
            client_addr: ctx.client_addr.clone(),
            policy: self.policy().map(str::to_owned),
            inbound_iss: self.inbound.iss.clone(),
            inbound_sub: self.inbound.sub.clone(),
            inbound_jti: self.inbound.jti.clone(),
            issued_jti: issued.and_then(|i| i.jti.clone()),
            issued_exp: issued.map(|i| i.exp),
            detail,
            claims_text: self.inbound.claims_text.take(),
        }
    }
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
    let mut detail = json!({"audience": audience, "scope": scope, "policy": policy});
    // The octo-sts shape names a GitHub target without `github:`; a preview must read the
    // audience the same way to decide it again.
    if req.bare_github_target {
        detail["bare_github_target"] = Value::Bool(true);
    }
    detail
}
