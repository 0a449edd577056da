//! Revoking broker tokens: one `jti`, or everything issued under a policy and/or to a
//! subject since a time (up to now).

use serde::Deserialize;
use serde_json::json;

use super::{AdminError, Principal};
use crate::broker::Broker;
use crate::storage::StoredRevocation;

/// Clock leeway added to how long a rule is kept (relying parties accept a token that long
/// past its `exp`).
const KEEP_LEEWAY_SECS: i64 = 300;

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

impl Broker {
    /// Revokes one issued token by `jti`.
    pub async fn revoke_jti(
        &self,
        jti: &str,
        reason: Option<String>,
        who: &Principal,
        request_id: &str,
    ) -> Result<StoredRevocation, AdminError> {
        if jti.is_empty() || jti.len() > 256 {
            return Err(AdminError::Invalid(vec![
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
            created_by: who.name.clone(),
            reason,
        };
        self.add_revocation(rule, who, request_id).await
    }

    /// Revokes every token matching `request`.
    pub async fn revoke_matching(
        &self,
        request: RevokeRequest,
        who: &Principal,
        request_id: &str,
    ) -> Result<StoredRevocation, AdminError> {
        let mut errors = Vec::new();
        if request.policy.is_none() && request.subject.is_none() {
            errors.push(
                "name a policy, a subject, or both (use tokens/{jti}/revoke for one token)".into(),
            );
        }
        let now = crate::jose::unix_now();
        let since = match request.since.as_deref() {
            None => 0,
            Some(text) => super::parse_time(text).unwrap_or_else(|| {
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
            return Err(AdminError::Invalid(errors));
        }
        let rule = StoredRevocation {
            jti: None,
            policy: request.policy,
            subject: request.subject,
            issued_since: since,
            issued_until: now,
            expires_at: self.keep_until(now),
            created_at: now,
            created_by: who.name.clone(),
            reason: request.reason,
        };
        self.add_revocation(rule, who, request_id).await
    }

    /// Every token issued up to `now` has expired by this time.
    fn keep_until(&self, now: i64) -> i64 {
        now + self.lifetimes.max_ttl.as_secs() as i64 + KEEP_LEEWAY_SECS
    }

    async fn add_revocation(
        &self,
        rule: StoredRevocation,
        who: &Principal,
        request_id: &str,
    ) -> Result<StoredRevocation, AdminError> {
        self.revocations.add(&*self.store, rule.clone()).await?;
        let detail = json!({"revocation": rule});
        super::record_change(
            &*self.store,
            who,
            request_id,
            "revoke",
            detail,
            rule.created_at,
        )
        .await?;
        Ok(rule)
    }
}
