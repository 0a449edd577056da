//! The app JWT: how a GitHub App proves itself to GitHub's API.

use serde_json::json;

use crate::policy::github::AppKey;

/// GitHub allows `iat` up to 60 s in the past (for clock drift) and `exp` at most 10
/// minutes ahead; nine minutes keeps a margin for our own drift.
const BACKDATE: i64 = 60;
const LIFETIME: i64 = 9 * 60;

/// The claims of an app JWT at `now`.
fn claims(app_id: u64, now: i64) -> serde_json::Value {
    json!({"iat": now - BACKDATE, "exp": now + LIFETIME, "iss": app_id.to_string()})
}

/// An app JWT signed with the app's key (RS256).
pub(super) fn app_jwt(key: &AppKey, app_id: u64, now: i64) -> Result<String, String> {
    key.sign(&claims(app_id, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_githubs_window() {
        let c = claims(123456, 1_000_000);
        assert_eq!(c["iss"], "123456");
        assert_eq!(c["iat"], 1_000_000 - 60);
        let exp = c["exp"].as_i64().unwrap();
        assert!(exp > 1_000_000 && exp <= 1_000_000 + 600, "{exp}");
    }
}
