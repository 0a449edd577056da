//! What a preview answers: the SPEC's fields (`evaluated`, `skipped`, `changed`,
//! `truncated`), plus counts and a few examples per policy.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::redecide::Verdict;

/// Request ids kept as examples per policy.
const EXAMPLES: usize = 3;

/// The impact of a candidate set on the recorded exchanges of a period.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Impact {
    /// Exchanges decided again.
    pub evaluated: u64,
    /// Exchanges that no policy judged (invalid token, replay, rate limit…), or recorded
    /// without their claims: not decided again.
    pub skipped: u64,
    /// Every exchange whose decision or admitting policy would change, newest first.
    pub changed: Vec<Change>,
    /// Whether the record limit or the time budget ended the scan before the period did.
    pub truncated: bool,
    /// Per policy that admitted an exchange before or after: how many it would no longer
    /// admit, how many it would newly admit, and a few of their request ids.
    #[serde(default)]
    pub by_policy: BTreeMap<String, PolicyImpact>,
}

/// One exchange that would be decided otherwise.
#[derive(Debug, Serialize, Deserialize)]
pub struct Change {
    /// Its request id (as in the audit trail).
    pub request_id: String,
    /// As the policies in force decide it.
    pub before: Before,
    /// As the candidate set would.
    pub after: After,
}

/// A decision before the change.
#[derive(Debug, Serialize, Deserialize)]
pub struct Before {
    /// `allow` or `deny`.
    pub decision: String,
    /// The admitting policy (for a denial: the policy that admitted the token but could not
    /// grant the request, if any).
    pub policy: Option<String>,
}

/// A decision after the change, with its reason code.
#[derive(Debug, Serialize, Deserialize)]
pub struct After {
    /// `allow` or `deny`.
    pub decision: String,
    /// As in [`Before::policy`].
    pub policy: Option<String>,
    /// The audit reason code it would be recorded with (`issued`, `not_admitted`…).
    pub reason: String,
}

/// What one policy would gain and lose.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PolicyImpact {
    /// Exchanges it admits now and would not.
    pub lost: u64,
    /// Exchanges it would admit and does not now.
    pub gained: u64,
    /// A few of their request ids.
    pub examples: Vec<String>,
}

fn decision(allow: bool) -> String {
    if allow { "allow" } else { "deny" }.to_owned()
}

impl Impact {
    /// Counts one exchange that would change.
    pub(super) fn add_change(&mut self, request_id: String, before: Verdict, after: Verdict) {
        if let Some(name) = admitted(&before) {
            self.by_policy
                .entry(name.to_owned())
                .or_default()
                .note(&request_id, |p| p.lost += 1);
        }
        if let Some(name) = admitted(&after) {
            self.by_policy
                .entry(name.to_owned())
                .or_default()
                .note(&request_id, |p| p.gained += 1);
        }
        self.changed.push(Change {
            request_id,
            before: Before {
                decision: decision(before.allow),
                policy: before.policy,
            },
            after: After {
                decision: decision(after.allow),
                policy: after.policy,
                reason: after.reason.to_owned(),
            },
        });
    }

    /// The report as `policy diff --impact` prints it.
    pub fn render(&self, since: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "impact since {since}: {} re-decided, {} skipped, {} would change{}",
            self.evaluated,
            self.skipped,
            self.changed.len(),
            if self.truncated {
                " (truncated: the record limit or time budget ended the scan)"
            } else {
                ""
            }
        );
        for c in &self.changed {
            let _ = writeln!(
                out,
                "  {}: {} {} -> {} {} ({})",
                c.request_id,
                c.before.decision,
                c.before.policy.as_deref().unwrap_or("-"),
                c.after.decision,
                c.after.policy.as_deref().unwrap_or("-"),
                c.after.reason
            );
        }
        for (name, p) in &self.by_policy {
            let _ = writeln!(
                out,
                "  policy {name}: {} lost, {} gained (e.g. {})",
                p.lost,
                p.gained,
                p.examples.join(", ")
            );
        }
        out
    }
}

/// The policy that admits, for an allowed exchange.
fn admitted(v: &Verdict) -> Option<&str> {
    v.allow.then_some(v.policy.as_deref()).flatten()
}

impl PolicyImpact {
    fn note(&mut self, request_id: &str, count: impl FnOnce(&mut Self)) {
        count(self);
        if self.examples.len() < EXAMPLES {
            self.examples.push(request_id.to_owned());
        }
    }
}
