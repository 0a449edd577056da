//! The broker's own tokens presented back to it: as admin credentials (audience
//! `<issuer_url>/admin`, scope `admin:read` / `admin:write`, so admins federate in through a
//! trust policy like any workload), as introspection credentials (audience `issuer_url`,
//! scope `introspect`), and as the subject of an introspection. One rule for all three: a
//! token this broker signed with a published key, current, for that audience, not revoked.
//! The bootstrap admin secret is the one other admin credential.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::mint::SigningKeys;
use crate::mint::verify::{CREDENTIAL_LEEWAY_SECS, scopes};
use crate::revocation::Revocations;
use crate::secret::Secret;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading documents, history, audit, explanations.
    Read,
    /// Changing documents.
    Write,
}

/// Who is acting.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `bootstrap-admin`, or the broker token's `sub`.
    pub name: String,
}

/// Why a request was not authenticated or authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credential (401).
    #[error("credentials are required")]
    Unauthenticated,
    /// A valid credential without the needed scope (403).
    #[error("the token lacks the scope this needs")]
    Forbidden,
}

/// Checks credentials against the broker's keys and revocations.
pub struct Authenticator {
    issuer_url: String,
    admin_audience: String,
    admin_token: Option<Secret>,
    keys: Arc<SigningKeys>,
    revocations: Arc<Revocations>,
}

impl Authenticator {
    /// Credentials of the broker `issuer_url`; `admin_token` is the bootstrap secret.
    pub fn new(
        issuer_url: &str,
        admin_token: Option<Secret>,
        keys: Arc<SigningKeys>,
        revocations: Arc<Revocations>,
    ) -> Self {
        Self {
            issuer_url: issuer_url.to_owned(),
            admin_audience: format!("{issuer_url}/admin"),
            admin_token,
            keys,
            revocations,
        }
    }

    /// The admin behind `bearer`, if it grants `access`.
    pub fn admin(
        &self,
        bearer: Option<&str>,
        access: Access,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let token = bearer.ok_or(AuthError::Unauthenticated)?;
        if let Some(secret) = &self.admin_token
            && secret.matches(token)
        {
            return Ok(Principal {
                name: "bootstrap-admin".into(),
            });
        }
        let claims = self.credential(token, &self.admin_audience, now)?;
        let granted = scopes(&claims).any(|s| match access {
            Access::Read => s == "admin:read" || s == "admin:write",
            Access::Write => s == "admin:write",
        });
        if !granted {
            return Err(AuthError::Forbidden);
        }
        // The `sub` may be rendered from inbound claims: as a name in logs, history and the
        // audit trail it carries no control characters (they are escaped, not dropped, so the
        // name still says what the token said).
        let name = claims
            .get("sub")
            .and_then(Value::as_str)
            .map_or("unknown".into(), crate::telemetry::printable)
            .into_owned();
        Ok(Principal { name })
    }

    /// Checks that `bearer` may call the introspection endpoint.
    pub fn introspector(&self, bearer: Option<&str>, now: i64) -> Result<(), AuthError> {
        let token = bearer.ok_or(AuthError::Unauthenticated)?;
        let claims = self.credential(token, &self.issuer_url, now)?;
        match scopes(&claims).any(|s| s == "introspect") {
            true => Ok(()),
            false => Err(AuthError::Forbidden),
        }
    }

    /// The claims of `token` if it is an active token of this broker (any audience, no
    /// leeway: the broker is the authority on its own tokens' lifetimes); `None` whatever the
    /// reason, so introspection is no oracle for forgers.
    pub fn active_claims(&self, token: &str, now: i64) -> Option<Map<String, Value>> {
        self.keys
            .current()
            .verify_own(token, &self.issuer_url, None, now, 0)
            .filter(|claims| !self.revocations.is_revoked(claims))
    }

    /// A live, unrevoked broker token for `audience` (a little leeway: replicas' clocks may
    /// differ).
    fn credential(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Map<String, Value>, AuthError> {
        self.keys
            .current()
            .verify_own(
                token,
                &self.issuer_url,
                Some(audience),
                now,
                CREDENTIAL_LEEWAY_SECS,
            )
            .filter(|claims| !self.revocations.is_revoked(claims))
            .ok_or(AuthError::Unauthenticated)
    }
}
