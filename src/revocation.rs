//! Revoked broker tokens.
//!
//! A broker token is a bearer credential verified offline by most relying parties, so
//! revocation reaches only those that ask: introspection (`POST /introspect`) and the broker's
//! own admin authentication. A rule names one `jti`, or every token issued under a policy
//! and/or to a subject within a window of issue times. The window ends when the rule is made,
//! so revoking a compromised policy's tokens never blocks the tokens issued after the fix.
//! Rules are kept in memory (checked per request without I/O) and in the database (so they
//! survive restarts), and forgotten once every token they could match has expired.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::audit::{Actor, AuditEvent};
use crate::storage::{Storage, StorageError, StoredRevocation};
use crate::trail::{AuditError, AuditWriter};

/// Clock leeway added to how long a rule is kept (relying parties accept a token that long
/// past its `exp`).
const KEEP_LEEWAY: Duration = Duration::from_secs(300);

/// `POST /admin/v1/tokens/revoke`: which tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Every token issued under this policy…
    pub policy: Option<String>,
    /// …and/or to this subject (the issued `sub`)…
    pub subject: Option<String>,
    /// …issued at or after this time (RFC 3339 or Unix seconds; default: any time).
    pub since: Option<String>,
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

/// Why a revocation was not made.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The request is invalid; every reason is listed.
    #[error("invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The rule was stored but its audit record could not be committed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The revocations in force.
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    /// One reload at a time: a slow reload that read before a new rule must not put its
    /// older set in force after a reload that read the rule.
    reloading: tokio::sync::Mutex<()>,
    store: Arc<dyn Storage>,
    audit: AuditWriter,
    /// How long a rule is kept: every token issued before it has expired by then.
    keep_for: Duration,
}

#[derive(Default)]
struct RevocationSet {
    jtis: HashSet<String>,
    rules: Vec<StoredRevocation>,
    all: Vec<StoredRevocation>,
}

impl RevocationSet {
    fn new(all: Vec<StoredRevocation>) -> Self {
        let jtis = all.iter().filter_map(|r| r.jti.clone()).collect();
        let rules = all.iter().filter(|r| r.jti.is_none()).cloned().collect();
        Self { jtis, rules, all }
    }

    fn is_revoked(&self, claims: &Map<String, Value>) -> bool {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("jti").is_some_and(|jti| self.jtis.contains(jti)) {
            return true;
        }
        // A token without a numeric iat cannot be placed in any window: treat it as covered.
        let iat = claims.get("iat").and_then(Value::as_i64);
        self.rules.iter().any(|rule| {
            let policy = rule
                .policy
                .as_deref()
                .is_none_or(|p| text("client_id") == Some(p));
            let subject = rule
                .subject
                .as_deref()
                .is_none_or(|s| text("sub") == Some(s));
            let in_window =
                iat.is_none_or(|iat| rule.issued_since <= iat && iat <= rule.issued_until);
            policy && subject && in_window
        })
    }
}

impl Revocations {
    /// Loads the rules in force at `now`. Issued tokens live at most `max_ttl`.
    pub async fn load(
        store: Arc<dyn Storage>,
        audit: AuditWriter,
        max_ttl: Duration,
        now: i64,
    ) -> Result<Self, StorageError> {
        let all = store.revocations(now).await?;
        Ok(Self {
            current: ArcSwap::from_pointee(RevocationSet::new(all)),
            reloading: tokio::sync::Mutex::new(()),
            store,
            audit,
            keep_for: max_ttl + KEEP_LEEWAY,
        })
    }

    /// Re-reads the rules (periodically, and after a change elsewhere).
    pub async fn reload(&self, now: i64) -> Result<(), StorageError> {
        let _one_at_a_time = self.reloading.lock().await;
        let all = self.store.revocations(now).await?;
        self.current.store(Arc::new(RevocationSet::new(all)));
        Ok(())
    }

    /// Every rule in force.
    pub fn list(&self) -> Vec<StoredRevocation> {
        self.current.load().all.clone()
    }

    /// Is the token with these (verified) claims revoked?
    pub fn is_revoked(&self, claims: &Map<String, Value>) -> bool {
        self.current.load().is_revoked(claims)
    }

    /// Revokes one issued token by `jti`.
    pub async fn revoke_jti(
        &self,
        jti: &str,
        reason: Option<String>,
        actor: Actor<'_>,
    ) -> Result<StoredRevocation, RevokeError> {
        if jti.is_empty() || jti.len() > 256 {
            return Err(RevokeError::Invalid(vec![
                "jti must be 1 to 256 characters".into(),
            ]));
        }
        let now = crate::jose::unix_now();
        let rule = StoredRevocation {
            jti: Some(jti.to_owned()),
            policy: None,
            subject: None,
            issued_since: 0,
            issued_until: now,
            expires_at: self.keep_until(now),
            created_at: now,
            created_by: actor.name.to_owned(),
            reason,
        };
        self.add(rule, actor).await
    }

    /// Revokes every token matching `request`.
    pub async fn revoke_matching(
        &self,
        request: RevokeRequest,
        actor: Actor<'_>,
    ) -> Result<StoredRevocation, RevokeError> {
        let mut errors = Vec::new();
        if request.policy.is_none() && request.subject.is_none() {
            errors.push(
                "name a policy, a subject, or both (use tokens/{jti}/revoke for one token)".into(),
            );
        }
        let now = crate::jose::unix_now();
        let since = match request.since.as_deref() {
            None => 0,
            Some(text) => crate::time::parse_time(text).unwrap_or_else(|| {
                errors.push(format!(
                    "since {text:?} is not an RFC 3339 time or Unix seconds"
                ));
                0
            }),
        };
        if since > now {
            errors.push("since is in the future; nothing issued yet can match".into());
        }
        if !errors.is_empty() {
            return Err(RevokeError::Invalid(errors));
        }
        let rule = StoredRevocation {
            jti: None,
            policy: request.policy,
            subject: request.subject,
            issued_since: since,
            issued_until: now,
            expires_at: self.keep_until(now),
            created_at: now,
            created_by: actor.name.to_owned(),
            reason: request.reason,
        };
        self.add(rule, actor).await
    }

    /// Every token issued up to `now` has expired by this time.
    fn keep_until(&self, now: i64) -> i64 {
        now + self.keep_for.as_secs() as i64
    }

    /// Stores a rule, puts it in force at once, and records it before answering.
    async fn add(
        &self,
        rule: StoredRevocation,
        actor: Actor<'_>,
    ) -> Result<StoredRevocation, RevokeError> {
        self.store.insert_revocation(&rule).await?;
        // Reload rather than append: another replica's rules come along too.
        self.reload(rule.created_at).await?;
        let record = AuditEvent::admin_change(
            actor,
            "revoke",
            json!({"revocation": rule}),
            rule.created_at,
        );
        self.audit.record(record).await?;
        tracing::info!(request_id = actor.request_id, actor = %actor.name, action = "revoke", "admin change");
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(
        policy: Option<&str>,
        subject: Option<&str>,
        since: i64,
        until: i64,
    ) -> StoredRevocation {
        StoredRevocation {
            jti: None,
            policy: policy.map(Into::into),
            subject: subject.map(Into::into),
            issued_since: since,
            issued_until: until,
            expires_at: until + 3600,
            created_at: until,
            created_by: "test".into(),
            reason: None,
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn rules_match_policy_subject_and_window() {
        let mut by_jti = rule(None, None, 0, 100);
        by_jti.jti = Some("j1".into());
        let set = RevocationSet::new(vec![
            by_jti,
            rule(Some("deploy"), None, 50, 100),
            rule(None, Some("ci:alice"), 0, 100),
        ]);
        let token = |jti: &str, policy: &str, sub: &str, iat: i64| {
            claims(json!({"jti": jti, "client_id": policy, "sub": sub, "iat": iat}))
        };
        assert!(set.is_revoked(&token("j1", "other", "bob", 10)));
        assert!(set.is_revoked(&token("j2", "deploy", "bob", 60)));
        assert!(
            !set.is_revoked(&token("j2", "deploy", "bob", 40)),
            "before the window"
        );
        assert!(
            !set.is_revoked(&token("j2", "deploy", "bob", 101)),
            "issued after the rule"
        );
        assert!(
            !set.is_revoked(&token("j2", "deploy-2", "bob", 60)),
            "names are exact"
        );
        assert!(set.is_revoked(&token("j3", "x", "ci:alice", 5)));
        assert!(!set.is_revoked(&token("j3", "x", "ci:alice2", 5)));
    }
}
