//! Why each policy did or did not admit a token: the per-check trace, in two sizes.
//!
//! Explain (admins, on demand) shows every policy of the issuer with every value in full.
//! The audit record of a denial keeps a bounded trace: only the index's candidates (the
//! policies the exchange itself evaluated), at most [`RECORDED_POLICIES`] of them and
//! [`RECORDED_TRACE_BYTES`] in all, each value cut to [`RECORDED_VALUE_BYTES`]. Anyone
//! holding a token of a shared issuer can cause a denial, so its record must not grow
//! with the policy set or with the token's claims.

use serde::Serialize;

use crate::audit::clip;
use crate::policy::Check;

/// Policies with checks in a recorded trace; the rest are counted as omitted.
pub const RECORDED_POLICIES: usize = 16;
/// Longest expected or actual value in a recorded trace.
pub const RECORDED_VALUE_BYTES: usize = 256;
/// Serialized size budget of a recorded trace.
pub const RECORDED_TRACE_BYTES: usize = 6 * 1024;

/// How one policy judged one token.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyTrace {
    /// The policy.
    pub policy: String,
    /// `selected`, `not_admitted`, `audience_not_granted`, `audience_required`,
    /// `scope_not_granted`.
    pub outcome: &'static str,
    /// Every check with its result.
    pub checks: Vec<Check>,
}

/// A trace being collected by [`super::decide`].
#[derive(Debug)]
pub struct Trace {
    /// Bounded for the audit record, or complete for explain.
    bounded: bool,
    /// Whether checks are recorded at all (not for a preview, which needs only outcomes).
    keeps_checks: bool,
    policies: Vec<PolicyTrace>,
    /// Serialized bytes of `policies` so far (bounded traces only).
    bytes: usize,
    /// Policies evaluated but not recorded.
    omitted: usize,
    /// The policy that admitted the token but could not grant what was asked, and why.
    denying: Option<(String, &'static str)>,
}

impl Trace {
    /// Every policy of the issuer, every value in full (explain).
    pub fn complete() -> Self {
        Self::new(false)
    }

    /// The candidates only, within the record's bounds (the audit record of a denial).
    pub fn bounded() -> Self {
        Self::new(true)
    }

    /// Only which policy denied, no checks: the index's candidates, as the exchange
    /// evaluates them (an impact preview, which decides thousands of exchanges again).
    pub fn outcomes() -> Self {
        Self {
            keeps_checks: false,
            ..Self::new(true)
        }
    }

    fn new(bounded: bool) -> Self {
        Self {
            bounded,
            keeps_checks: true,
            policies: Vec::new(),
            bytes: 0,
            omitted: 0,
            denying: None,
        }
    }

    /// Whether every policy of the issuer is evaluated, not only the index's candidates.
    pub(crate) fn every_policy(&self) -> bool {
        !self.bounded
    }

    /// Whether the next policy's checks are still recorded.
    pub(crate) fn wants_checks(&self) -> bool {
        if !self.keeps_checks {
            return false;
        }
        !self.bounded
            || (self.policies.len() < RECORDED_POLICIES && self.bytes < RECORDED_TRACE_BYTES)
    }

    /// Records one policy's outcome; `checks` is `None` when [`Self::wants_checks`] said no.
    pub(crate) fn record(
        &mut self,
        policy: &str,
        outcome: &'static str,
        checks: Option<Vec<Check>>,
    ) {
        // The policy whose refusal the client gets (see `decide`): the first that admitted
        // the token, unless it only lacked the audience and a later one had it.
        let replaces = match &self.denying {
            None => true,
            Some((_, first)) => *first == "audience_not_granted" && outcome != *first,
        };
        if outcome != "not_admitted" && replaces {
            self.denying = Some((policy.to_owned(), outcome));
        }
        let Some(mut checks) = checks else {
            self.omitted += 1;
            return;
        };
        if self.bounded {
            checks.iter_mut().for_each(clip_check);
        }
        let entry = PolicyTrace {
            policy: policy.to_owned(),
            outcome,
            checks,
        };
        if self.bounded {
            let size = serde_json::to_vec(&entry).map_or(usize::MAX, |v| v.len());
            if self.bytes.saturating_add(size) > RECORDED_TRACE_BYTES {
                // Full: nothing more is recorded, so the bound holds whatever follows.
                self.bytes = RECORDED_TRACE_BYTES;
                self.omitted += 1;
                return;
            }
            self.bytes += size;
        }
        self.policies.push(entry);
    }

    /// The policy a denial is recorded under, so that audit queries by policy show it: the
    /// one whose refusal the client got (the first that admitted the token but could not
    /// grant what was asked, unless it lacked only the audience and a later one had it). Only
    /// a policy that admitted the token: a policy the client merely named (kept in the
    /// record's detail) would let anyone holding a token of the issuer file denials, and
    /// metrics, under any of its policies.
    pub fn denying_policy(&self) -> Option<&str> {
        self.denying.as_ref().map(|(policy, _)| policy.as_str())
    }

    /// Policies evaluated but left out of the trace.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// The recorded policies.
    pub fn policies(&self) -> &[PolicyTrace] {
        &self.policies
    }

    /// The recorded policies, owned.
    pub fn into_policies(self) -> Vec<PolicyTrace> {
        self.policies
    }
}

fn clip_check(check: &mut Check) {
    check.expected = clip(&check.expected, RECORDED_VALUE_BYTES).into_owned();
    if let Some(actual) = &mut check.actual {
        *actual = clip(actual, RECORDED_VALUE_BYTES).into_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(actual: &str) -> Check {
        Check {
            check: "sub".into(),
            expected: "equals \"x\"".into(),
            actual: Some(actual.into()),
            passed: false,
        }
    }

    #[test]
    fn a_bounded_trace_stays_within_its_budget() {
        let mut trace = Trace::bounded();
        let long = "a".repeat(16 * 1024);
        for i in 0..5000 {
            let checks = trace
                .wants_checks()
                .then(|| vec![check(&long), check(&long)]);
            trace.record(&format!("p{i}"), "not_admitted", checks);
        }
        let size = serde_json::to_vec(trace.policies()).unwrap().len();
        assert!(size <= RECORDED_TRACE_BYTES, "{size}");
        assert!(trace.policies().len() <= RECORDED_POLICIES);
        assert_eq!(trace.policies().len() + trace.omitted(), 5000);
        let actual = trace.policies()[0].checks[0].actual.as_deref().unwrap();
        assert!(actual.len() < RECORDED_VALUE_BYTES + 32, "{}", actual.len());
        assert!(actual.ends_with("bytes]"), "{actual}");
    }

    #[test]
    fn the_denying_policy_is_known_past_the_bound() {
        let mut trace = Trace::bounded();
        for i in 0..100 {
            let checks = trace.wants_checks().then(|| vec![check("v")]);
            let outcome = if i == 60 {
                "audience_not_granted"
            } else {
                "not_admitted"
            };
            trace.record(&format!("p{i}"), outcome, checks);
        }
        assert_eq!(trace.denying_policy(), Some("p60"));
    }

    #[test]
    fn a_complete_trace_keeps_everything() {
        let mut trace = Trace::complete();
        let long = "a".repeat(4096);
        for i in 0..40 {
            assert!(trace.wants_checks());
            trace.record(&format!("p{i}"), "not_admitted", Some(vec![check(&long)]));
        }
        assert_eq!(trace.policies().len(), 40);
        assert_eq!(
            trace.policies()[39].checks[0].actual.as_deref(),
            Some(&*long)
        );
    }
}
