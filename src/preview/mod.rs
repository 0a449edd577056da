//! Impact preview: the recorded exchanges of a period decided again under a candidate
//! policy set, to show what a change would flip before it lands. Read-only: nothing is
//! stored, issued or consumed.
//!
//! Bounded work: a record limit and a time budget (`truncated` when either ends the scan),
//! the audit index read in keyset pages (never the whole period at once), the deciding done
//! off the async workers, and at most [`CONCURRENT`] previews at a time.

mod redecide;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::audit::AuditRecord;
use crate::policy::PolicySet;
use crate::storage::StorageError;
use crate::trail::AuditTrail;

pub use redecide::{Recorded, Verdict, is_judged, redecide};
pub use report::{After, Before, Change, Impact, PolicyImpact};

/// Records looked at when the request names no limit.
pub const DEFAULT_LIMIT: u32 = 10_000;
/// The largest limit a request may name.
pub const MAX_LIMIT: u32 = 100_000;
/// How long one preview may scan.
pub const TIME_BUDGET: Duration = Duration::from_secs(5);
/// Previews running at once; others wait their turn. Each may take a core for its budget.
pub const CONCURRENT: usize = 2;
/// Records per page of the audit index.
const PAGE: u32 = 500;

/// Which records a preview decides again, and how much work it may do.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Records at or after this Unix time.
    pub since: i64,
    /// At most this many records (evaluated and skipped together).
    pub limit: u32,
    /// At most this long.
    pub budget: Duration,
}

impl Scope {
    /// `since` as a duration back from `now` (`7d`, `24h`) or a time (RFC 3339), and an
    /// optional limit (1..=[`MAX_LIMIT`]). The message says what is wrong.
    pub fn parse(since: &str, limit: Option<u64>, now: i64) -> Result<Self, String> {
        let since = parse_since(since, now).ok_or_else(|| {
            format!("since: {since:?} is neither a duration (7d, 24h) nor an RFC 3339 time")
        })?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=u64::from(MAX_LIMIT)).contains(&n) => n as u32,
            Some(_) => return Err(format!("limit: must be between 1 and {MAX_LIMIT}")),
        };
        Ok(Self {
            since,
            limit,
            budget: TIME_BUDGET,
        })
    }
}

/// A duration back from `now`, or a time.
pub fn parse_since(text: &str, now: i64) -> Option<i64> {
    let text = text.trim();
    if let Ok(back) = humantime::parse_duration(text) {
        let back = i64::try_from(back.as_secs()).ok()?;
        return Some(now.saturating_sub(back));
    }
    humantime::parse_rfc3339_weak(text)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// Runs previews over the broker's audit trail, a few at a time.
pub struct Previews {
    trail: Arc<AuditTrail>,
    running: Semaphore,
}

impl Previews {
    /// Previews over `trail`.
    pub fn new(trail: Arc<AuditTrail>) -> Self {
        Self {
            trail,
            running: Semaphore::new(CONCURRENT),
        }
    }

    /// The impact of replacing `current` by `candidate` on the exchanges `scope` selects.
    pub async fn run(
        &self,
        current: Arc<PolicySet>,
        candidate: Arc<PolicySet>,
        scope: &Scope,
    ) -> Result<Impact, StorageError> {
        let _turn = self
            .running
            .acquire()
            .await
            .map_err(|_| StorageError::Corrupt("the preview service stopped".into()))?;
        scan(&self.trail, current, candidate, scope).await
    }
}

/// The impact of replacing `current` by `candidate` on the exchanges of `trail` that `scope`
/// selects, newest first.
pub async fn scan(
    trail: &AuditTrail,
    current: Arc<PolicySet>,
    candidate: Arc<PolicySet>,
    scope: &Scope,
) -> Result<Impact, StorageError> {
    let started = Instant::now();
    let mut impact = Impact::default();
    let mut seen: u32 = 0;
    let mut cursor = None;
    loop {
        let want = PAGE.min(scope.limit - seen);
        let records = trail
            .exchanges(scope.since, cursor, want, is_judged)
            .await?;
        let full = records.len() == want as usize;
        seen += records.len() as u32;
        let next = records.last().map(|r| (r.event.time, r.id));
        let (current, candidate) = (current.clone(), candidate.clone());
        let decided =
            tokio::task::spawn_blocking(move || decide_page(records, &current, &candidate))
                .await
                .map_err(|e| StorageError::Corrupt(format!("the preview stopped: {e}")))?;
        impact.merge(decided);
        // A short page is the period's last.
        let Some(next) = next.filter(|_| full) else {
            return Ok(impact);
        };
        if seen >= scope.limit || started.elapsed() >= scope.budget {
            // A full last page may have been the period's last: look before saying so.
            impact.truncated = !trail
                .exchanges(scope.since, Some(next), 1, |_| false)
                .await?
                .is_empty();
            return Ok(impact);
        }
        cursor = Some(next);
    }
}

/// What one page's exchanges came to.
struct Decided {
    evaluated: u64,
    skipped: u64,
    changed: Vec<(String, Verdict, Verdict)>,
}

fn decide_page(records: Vec<AuditRecord>, current: &PolicySet, candidate: &PolicySet) -> Decided {
    let mut decided = Decided {
        evaluated: 0,
        skipped: 0,
        changed: Vec::new(),
    };
    for record in records {
        let Some(recorded) = Recorded::from_event(record.event) else {
            decided.skipped += 1;
            continue;
        };
        decided.evaluated += 1;
        let request_id = recorded.request_id.clone();
        let (before, after) = redecide(recorded, current, candidate);
        if before.changed_to(&after) {
            decided.changed.push((request_id, before, after));
        }
    }
    decided
}

impl Impact {
    fn merge(&mut self, page: Decided) {
        self.evaluated += page.evaluated;
        self.skipped += page.skipped;
        for (request_id, before, after) in page.changed {
            self.add_change(request_id, before, after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_back_or_a_time() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("7d", now), Some(now - 7 * 86400));
        assert_eq!(parse_since("24h", now), Some(now - 86400));
        assert_eq!(
            parse_since("2026-11-23T20:00:00Z", now),
            Some(1_795_464_000)
        );
        assert_eq!(parse_since("last week", now), None);
        assert_eq!(parse_since("", now), None);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(Scope::parse("1d", None, 0).unwrap().limit, DEFAULT_LIMIT);
        assert!(Scope::parse("1d", Some(0), 0).is_err());
        assert!(Scope::parse("1d", Some(u64::from(MAX_LIMIT) + 1), 0).is_err());
        assert_eq!(Scope::parse("1d", Some(5), 0).unwrap().limit, 5);
    }
}
