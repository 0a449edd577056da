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

use arc_swap::ArcSwap;
use serde_json::{Map, Value};

use crate::storage::{Storage, StorageError, StoredRevocation};

/// The revocations in force.
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    /// One reload at a time: a slow reload that read before a new rule must not put its
    /// older set in force after a reload that read the rule.
    reloading: tokio::sync::Mutex<()>,
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
}

impl Revocations {
    /// Loads the rules in force at `now`.
    pub async fn load(store: &dyn Storage, now: i64) -> Result<Self, StorageError> {
        let all = store.revocations(now).await?;
        Ok(Self {
            current: ArcSwap::from_pointee(RevocationSet::new(all)),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// Stores a rule and puts it in force at once.
    pub async fn add(
        &self,
        store: &dyn Storage,
        rule: StoredRevocation,
    ) -> Result<(), StorageError> {
        store.insert_revocation(&rule).await?;
        // Reload rather than append: another replica's rules come along too.
        self.reload(store, rule.created_at).await
    }

    /// Re-reads the rules (periodically, and after a change elsewhere).
    pub async fn reload(&self, store: &dyn Storage, now: i64) -> Result<(), StorageError> {
        let _one_at_a_time = self.reloading.lock().await;
        let all = store.revocations(now).await?;
        self.current.store(Arc::new(RevocationSet::new(all)));
        Ok(())
    }

    /// Every rule in force.
    pub fn list(&self) -> Vec<StoredRevocation> {
        self.current.load().all.clone()
    }

    /// Is the token with these (verified) claims revoked?
    pub fn is_revoked(&self, claims: &Map<String, Value>) -> bool {
        let set = self.current.load();
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("jti").is_some_and(|jti| set.jtis.contains(jti)) {
            return true;
        }
        // A token without a numeric iat cannot be placed in any window: treat it as covered.
        let iat = claims.get("iat").and_then(Value::as_i64);
        set.rules.iter().any(|rule| {
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
        let set = Revocations {
            current: ArcSwap::from_pointee(RevocationSet::new(vec![
                by_jti,
                rule(Some("deploy"), None, 50, 100),
                rule(None, Some("ci:alice"), 0, 100),
            ])),
            reloading: tokio::sync::Mutex::new(()),
        };
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
