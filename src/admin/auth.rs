//! Admin authentication: the bootstrap secret, or a broker-issued token with audience
//! `<issuer_url>/admin` and scope `admin:read` / `admin:write` (admins federate in through a
//! trust policy like any workload).

use subtle::ConstantTimeEq;

use crate::broker::Broker;
use crate::mint::verify::{CREDENTIAL_LEEWAY_SECS, scopes};

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
    #[error("admin credentials are required")]
    Unauthenticated,
    /// A valid credential without the needed scope (403).
    #[error("the token lacks the scope this needs")]
    Forbidden,
}

/// Checks the bearer credential for `access`.
pub fn authenticate(
    broker: &Broker,
    bearer: Option<&str>,
    access: Access,
    now: i64,
) -> Result<Principal, AuthError> {
    let token = bearer.ok_or(AuthError::Unauthenticated)?;
    if let Some(secret) = &broker.admin_token
        && equal_secret(token, secret.expose())
    {
        return Ok(Principal {
            name: "bootstrap-admin".into(),
        });
    }
    let audience = format!("{}/admin", broker.issuer_url);
    let claims = broker
        .keys
        .load()
        .verify_own(
            token,
            &broker.issuer_url,
            Some(&audience),
            now,
            CREDENTIAL_LEEWAY_SECS,
        )
        .filter(|claims| !broker.revocations.is_revoked(claims))
        .ok_or(AuthError::Unauthenticated)?;
    let granted = scopes(&claims).any(|s| match access {
        Access::Read => s == "admin:read" || s == "admin:write",
        Access::Write => s == "admin:write",
    });
    if !granted {
        return Err(AuthError::Forbidden);
    }
    // The `sub` may be rendered from inbound claims: as a name in logs, history and the
    // audit trail it carries no control characters.
    let name = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .map_or("unknown".into(), crate::telemetry::printable)
        .into_owned();
    Ok(Principal { name })
}

/// Compares SHA-256 digests in constant time, so neither the content nor the length of the
/// secret leaks through timing.
fn equal_secret(given: &str, secret: &str) -> bool {
    use aws_lc_rs::digest::{SHA256, digest};
    let a = digest(&SHA256, given.as_bytes());
    let b = digest(&SHA256, secret.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(equal_secret(
            "correct horse battery",
            "correct horse battery"
        ));
        assert!(!equal_secret(
            "correct horse batterY",
            "correct horse battery"
        ));
        assert!(!equal_secret("", "correct horse battery"));
    }
}
