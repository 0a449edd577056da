//! GitHub App grants: the `GitHubApp` document compiled (its private key read and parsed
//! once), a policy's `grant.github`, and the narrowing of one request to what it may get.
//! Pure but for reading the key: the exchange, explain and lint run the same code.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sts_jose::sign::SigningKey;

use super::document::{GitHubAppDoc, GitHubGrantDoc};
use super::issuer::check_issuer_url;

/// GitHub's own API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// A PEM key file is a few kilobytes; anything much larger is not one.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// GitHub's limit on the repositories one installation token may name.
const MAX_REPOSITORIES: usize = 500;

/// The prefix of a GitHub target in `audience`.
pub const AUDIENCE_PREFIX: &str = "github:";

/// Access levels, ordered: a grant of `write` covers a request for `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `admin` (only where GitHub documents it).
    Admin,
}

impl Level {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// As GitHub writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

use Level::{Admin, Read, Write};
const RW: &[Level] = &[Read, Write];
const RWA: &[Level] = &[Read, Write, Admin];

/// The permissions an installation access token can be asked for, with the levels GitHub's
/// REST reference ("Create an installation access token for an app") documents for each.
pub const PERMISSIONS: &[(&str, &[Level])] = &[
    ("actions", RW),
    ("administration", RW),
    ("checks", RW),
    ("codespaces", RW),
    ("contents", RW),
    ("dependabot_secrets", RW),
    ("deployments", RW),
    ("email_addresses", RW),
    ("environments", RW),
    ("followers", RW),
    ("git_ssh_keys", RW),
    ("gpg_keys", RW),
    ("interaction_limits", RW),
    ("issues", RW),
    ("members", RW),
    ("metadata", RW),
    ("organization_administration", RW),
    ("organization_announcement_banners", RW),
    ("organization_copilot_seat_management", &[Write]),
    ("organization_custom_org_roles", RW),
    ("organization_custom_properties", RWA),
    ("organization_custom_roles", RW),
    ("organization_events", &[Read]),
    ("organization_hooks", RW),
    ("organization_packages", RW),
    ("organization_personal_access_token_requests", RW),
    ("organization_personal_access_tokens", RW),
    ("organization_plan", &[Read]),
    ("organization_projects", RWA),
    ("organization_secrets", RW),
    ("organization_self_hosted_runners", RW),
    ("organization_user_blocking", RW),
    ("packages", RW),
    ("pages", RW),
    ("profile", &[Write]),
    ("pull_requests", RW),
    ("repository_custom_properties", RW),
    ("repository_hooks", RW),
    ("repository_projects", RWA),
    ("secret_scanning_alerts", RW),
    ("secrets", RW),
    ("security_events", RW),
    ("single_file", RW),
    ("starring", RW),
    ("statuses", RW),
    ("team_discussions", RW),
    ("vulnerability_alerts", RW),
    ("workflows", &[Write]),
];

/// The levels GitHub documents for a permission (`None`: not a permission).
fn levels_of(name: &str) -> Option<&'static [Level]> {
    PERMISSIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, levels)| *levels)
}

/// The app's private key, held parsed. `Debug` never shows it.
pub struct AppKey(SigningKey);

impl AppKey {
    /// Signs `claims` as a JWT (RS256).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        self.0.sign_jwt(claims, "JWT").map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(***)")
    }
}

/// A GitHub App, validated.
#[derive(Debug)]
pub struct GitHubApp {
    /// Name policies refer to.
    pub name: String,
    /// The app's id: the app JWT's `iss`.
    pub app_id: u64,
    /// The REST API base, without a trailing slash.
    pub api_url: String,
    /// The private key; `None` when the set was compiled without reading keys (lint).
    pub key: Option<AppKey>,
    /// The document it was built from.
    pub doc: GitHubAppDoc,
}

type FieldError = (String, String);

impl GitHubApp {
    /// Validates a document; with `read_key`, reads and parses its private key (once: the
    /// compiled app is shared by every exchange until the documents change).
    pub fn compile(
        doc: &GitHubAppDoc,
        allow_loopback_http: bool,
        read_key: bool,
    ) -> Result<Self, FieldError> {
        let err = |field: &str, reason: String| Err((field.to_owned(), reason));
        if let Err(reason) = super::check_name(&doc.name) {
            return err("name", reason);
        }
        if doc.app_id == 0 {
            return err("app_id", "must be a positive integer".into());
        }
        let api_url = doc
            .api_url
            .as_deref()
            .unwrap_or(DEFAULT_API_URL)
            .trim_end_matches('/')
            .to_owned();
        if let Err(reason) = check_issuer_url(&api_url, allow_loopback_http) {
            return err("api_url", reason.replace("issuer URL", "API URL"));
        }
        let key = match (&doc.private_key_file, &doc.private_key_env) {
            (Some(_), Some(_)) | (None, None) => {
                return err(
                    "private_key_file",
                    "give exactly one of private_key_file and private_key_env".into(),
                );
            }
            (Some(file), None) if read_key => {
                Some(read_key_file(file).map_err(|r| ("private_key_file".to_owned(), r))?)
            }
            (None, Some(var)) if read_key => {
                Some(read_key_env(var).map_err(|r| ("private_key_env".to_owned(), r))?)
            }
            _ => None,
        };
        Ok(Self {
            name: doc.name.clone(),
            app_id: doc.app_id,
            api_url,
            key,
            doc: doc.clone(),
        })
    }
}

fn read_key_file(path: &str) -> Result<AppKey, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if meta.len() > MAX_KEY_BYTES {
        return Err(format!("{path:?} is larger than {MAX_KEY_BYTES} bytes"));
    }
    let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    parse_key(&pem).map_err(|r| format!("{path:?}: {r}"))
}

fn read_key_env(var: &str) -> Result<AppKey, String> {
    let pem = std::env::var(var).map_err(|_| format!("environment variable {var:?} is not set"))?;
    parse_key(&pem).map_err(|r| format!("{var:?}: {r}"))
}

/// The PEM as an RS256 key; the reason never quotes it.
fn parse_key(pem: &str) -> Result<AppKey, String> {
    SigningKey::from_rsa_pem(pem)
        .map(AppKey)
        .map_err(|e| e.to_string())
}

/// A policy's `grant.github`, validated.
#[derive(Debug, Clone)]
pub struct GitHubGrant {
    /// The app.
    pub app: Arc<GitHubApp>,
    /// The account whose installation is used, as the policy writes it.
    pub owner: String,
    /// Repositories the token may reach; `None`: the installation's own set.
    pub repositories: Option<Vec<String>>,
    /// The most each permission may get.
    pub permissions: BTreeMap<String, Level>,
}

/// What one exchange asks GitHub for: the plain value explain shows, the audit records and
/// a policy test can compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitHubRequest {
    /// The `GitHubApp` document's name.
    pub app: String,
    /// The installation's account.
    pub owner: String,
    /// The repositories asked for; `None`: the installation's own set.
    pub repositories: Option<Vec<String>>,
    /// Permission name to level.
    pub permissions: BTreeMap<String, Level>,
}

impl GitHubRequest {
    /// The permissions as scope tokens (`contents:read pull_requests:write`).
    pub fn scopes(&self) -> Vec<String> {
        self.permissions
            .iter()
            .map(|(name, level)| format!("{name}:{}", level.as_str()))
            .collect()
    }
}

/// Why a request cannot be narrowed to the grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The target (owner or repository) is not granted.
    Target,
    /// A permission or level is not granted.
    Scope,
}

impl GitHubGrant {
    /// Validates a document against the apps in force.
    pub fn compile(
        doc: &GitHubGrantDoc,
        apps: &BTreeMap<String, Arc<GitHubApp>>,
    ) -> Result<Self, FieldError> {
        let err = |field: &str, reason: String| Err((format!("grant.github.{field}"), reason));
        let Some(app) = apps.get(&doc.app) else {
            return err("app", format!("names an unknown GitHubApp {:?}", doc.app));
        };
        if !is_login(&doc.owner) {
            return err(
                "owner",
                format!("{:?} is not a GitHub account name", doc.owner),
            );
        }
        if let Some(repos) = &doc.repositories {
            if repos.is_empty() {
                return err(
                    "repositories",
                    "may not be empty: leave it out to mean the installation's repositories".into(),
                );
            }
            if repos.len() > MAX_REPOSITORIES {
                return err(
                    "repositories",
                    format!("GitHub takes at most {MAX_REPOSITORIES} repositories per token"),
                );
            }
            if let Some(bad) = repos.iter().find(|r| !is_repository(r)) {
                return err(
                    "repositories",
                    format!("{bad:?} is not a repository name (without the owner)"),
                );
            }
        }
        if doc.permissions.is_empty() {
            return err("permissions", "at least one permission is required".into());
        }
        let mut permissions = BTreeMap::new();
        for (name, level) in &doc.permissions {
            let Some(levels) = levels_of(name) else {
                return err(
                    "permissions",
                    format!("{name:?} is not a GitHub App permission"),
                );
            };
            match Level::parse(level).filter(|l| levels.contains(l)) {
                Some(l) => permissions.insert(name.clone(), l),
                None => {
                    let allowed: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
                    return err(
                        "permissions",
                        format!("{name}: {level:?} is not one of {}", allowed.join(", ")),
                    );
                }
            };
        }
        Ok(Self {
            app: app.clone(),
            owner: doc.owner.clone(),
            repositories: doc.repositories.clone(),
            permissions,
        })
    }

    /// The whole grant as one request.
    pub fn everything(&self) -> GitHubRequest {
        GitHubRequest {
            app: self.app.name.clone(),
            owner: self.owner.clone(),
            repositories: self.repositories.clone(),
            permissions: self.permissions.clone(),
        }
    }

    /// Narrows the grant to a request: `target` is `OWNER` or `OWNER/REPO` (without the
    /// `github:` prefix; `None`: the whole grant), `scopes` are `NAME:LEVEL` tokens (`None`:
    /// every granted permission). Owners compare without case, as GitHub's do.
    pub fn narrow(
        &self,
        target: Option<&str>,
        scopes: Option<&[String]>,
    ) -> Result<GitHubRequest, Refusal> {
        let mut request = self.everything();
        if let Some(target) = target {
            let (owner, repo) = match target.split_once('/') {
                Some((owner, repo)) => (owner, Some(repo)),
                None => (target, None),
            };
            if !owner.eq_ignore_ascii_case(&self.owner) {
                return Err(Refusal::Target);
            }
            if let Some(repo) = repo {
                request.repositories = Some(vec![self.repository(repo)?]);
            }
        }
        if let Some(scopes) = scopes {
            request.permissions = self.permissions_for(scopes)?;
        }
        Ok(request)
    }

    /// One repository, which must be granted when the grant lists them.
    fn repository(&self, repo: &str) -> Result<String, Refusal> {
        if !is_repository(repo) {
            return Err(Refusal::Target);
        }
        match &self.repositories {
            None => Ok(repo.to_owned()),
            Some(list) => list
                .iter()
                .find(|r| r.eq_ignore_ascii_case(repo))
                .cloned()
                .ok_or(Refusal::Target),
        }
    }

    /// `NAME:LEVEL` tokens, each at most the granted level and at a level GitHub documents.
    fn permissions_for(&self, scopes: &[String]) -> Result<BTreeMap<String, Level>, Refusal> {
        let mut asked = BTreeMap::new();
        for scope in scopes {
            let (name, level) = scope.split_once(':').ok_or(Refusal::Scope)?;
            let level = Level::parse(level).ok_or(Refusal::Scope)?;
            let granted = self.permissions.get(name).ok_or(Refusal::Scope)?;
            let documented = levels_of(name).is_some_and(|l| l.contains(&level));
            if level > *granted || !documented || asked.insert(name.to_owned(), level).is_some() {
                return Err(Refusal::Scope);
            }
        }
        if asked.is_empty() {
            return Err(Refusal::Scope);
        }
        Ok(asked)
    }
}

/// A GitHub account name: 1-39 of A-Z a-z 0-9 and `-`, not starting with `-`. It goes into
/// API paths, so nothing else may pass.
pub fn is_login(name: &str) -> bool {
    (1..=39).contains(&name.len())
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A repository name: 1-100 of A-Z a-z 0-9 `.` `-` `_`, not `.` or `..`.
pub fn is_repository(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app() -> Arc<GitHubApp> {
        let doc: GitHubAppDoc = serde_json::from_value(
            json!({"name": "bot", "app_id": 1, "private_key_env": "UNUSED"}),
        )
        .unwrap();
        Arc::new(GitHubApp::compile(&doc, false, false).unwrap())
    }

    fn grant(doc: serde_json::Value) -> Result<GitHubGrant, FieldError> {
        let apps = BTreeMap::from([("bot".to_owned(), app())]);
        GitHubGrant::compile(&serde_json::from_value(doc).unwrap(), &apps)
    }

    fn acme() -> GitHubGrant {
        grant(
            json!({"app": "bot", "owner": "acme", "repositories": ["api", "homebrew-tap"],
                     "permissions": {"contents": "write", "pull_requests": "read"}}),
        )
        .unwrap()
    }

    fn scopes(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn a_request_narrows_to_one_repository_and_fewer_permissions() {
        let g = acme();
        let all = g.narrow(None, None).unwrap();
        assert_eq!(
            all.repositories,
            Some(vec!["api".to_owned(), "homebrew-tap".to_owned()])
        );
        assert_eq!(all.scopes(), ["contents:write", "pull_requests:read"]);
        let one = g
            .narrow(Some("ACME/Api"), Some(&scopes("contents:read")))
            .unwrap();
        assert_eq!(one.owner, "acme");
        assert_eq!(
            one.repositories,
            Some(vec!["api".into()]),
            "the policy's spelling"
        );
        assert_eq!(
            one.scopes(),
            ["contents:read"],
            "left-out permissions are not asked"
        );
    }

    #[test]
    fn what_is_not_granted_is_refused() {
        let g = acme();
        assert_eq!(g.narrow(Some("evil"), None), Err(Refusal::Target));
        assert_eq!(g.narrow(Some("acme/other"), None), Err(Refusal::Target));
        assert_eq!(g.narrow(Some("acme/../x"), None), Err(Refusal::Target));
        for bad in [
            "pull_requests:write",
            "issues:read",
            "contents",
            "contents:owner",
            "contents:read contents:write",
            "workflows:write",
        ] {
            assert_eq!(
                g.narrow(None, Some(&scopes(bad))),
                Err(Refusal::Scope),
                "{bad}"
            );
        }
        assert_eq!(g.narrow(None, Some(&[])), Err(Refusal::Scope));
    }

    #[test]
    fn without_a_repository_list_any_repository_of_the_owner() {
        let g = grant(json!({"app": "bot", "owner": "acme", "permissions": {"contents": "read"}}))
            .unwrap();
        assert_eq!(g.narrow(None, None).unwrap().repositories, None);
        assert_eq!(
            g.narrow(Some("acme/x"), None).unwrap().repositories,
            Some(vec!["x".into()])
        );
    }

    #[test]
    fn documents_are_checked_strictly() {
        let cases = [
            (
                json!({"app": "nope", "owner": "acme", "permissions": {"contents": "read"}}),
                "grant.github.app",
            ),
            (
                json!({"app": "bot", "owner": "ac/me", "permissions": {"contents": "read"}}),
                "grant.github.owner",
            ),
            (
                json!({"app": "bot", "owner": "acme", "repositories": [], "permissions": {"contents": "read"}}),
                "grant.github.repositories",
            ),
            (
                json!({"app": "bot", "owner": "acme", "repositories": ["a/b"], "permissions": {"contents": "read"}}),
                "grant.github.repositories",
            ),
            (
                json!({"app": "bot", "owner": "acme", "permissions": {"contents": "admin"}}),
                "grant.github.permissions",
            ),
            (
                json!({"app": "bot", "owner": "acme", "permissions": {"workflows": "read"}}),
                "grant.github.permissions",
            ),
            (
                json!({"app": "bot", "owner": "acme", "permissions": {"contnets": "read"}}),
                "grant.github.permissions",
            ),
            (
                json!({"app": "bot", "owner": "acme", "permissions": {}}),
                "grant.github.permissions",
            ),
        ];
        for (doc, field) in cases {
            assert_eq!(grant(doc.clone()).unwrap_err().0, field, "{doc}");
        }
        let many: Vec<String> = (0..=MAX_REPOSITORIES).map(|i| format!("r{i}")).collect();
        let too_many = json!({"app": "bot", "owner": "acme", "repositories": many,
                              "permissions": {"contents": "read"}});
        assert_eq!(grant(too_many).unwrap_err().0, "grant.github.repositories");
        assert!(grant(json!({"app": "bot", "owner": "acme", "permissions": {"repository_projects": "admin"}})).is_ok());
    }

    #[test]
    fn apps_are_checked_strictly() {
        let compile = |doc: serde_json::Value| {
            GitHubApp::compile(&serde_json::from_value(doc).unwrap(), false, false)
        };
        let ok = compile(
            json!({"name": "a", "app_id": 7, "private_key_file": "/k.pem",
                                "api_url": "https://ghes.example/api/v3/"}),
        )
        .unwrap();
        assert_eq!(ok.api_url, "https://ghes.example/api/v3");
        for (doc, field) in [
            (json!({"name": "a", "app_id": 7}), "private_key_file"),
            (
                json!({"name": "a", "app_id": 7, "private_key_file": "f", "private_key_env": "E"}),
                "private_key_file",
            ),
            (
                json!({"name": "a", "app_id": 0, "private_key_file": "f"}),
                "app_id",
            ),
            (
                json!({"name": "a", "app_id": 7, "private_key_file": "f", "api_url": "http://ghes.example"}),
                "api_url",
            ),
            (
                json!({"name": "a", "app_id": 7, "private_key_file": "f", "api_url": "http://127.0.0.1:1"}),
                "api_url",
            ),
        ] {
            assert_eq!(compile(doc.clone()).unwrap_err().0, field, "{doc}");
        }
        let local = json!({"name": "a", "app_id": 7, "private_key_file": "f", "api_url": "http://127.0.0.1:1"});
        assert!(GitHubApp::compile(&serde_json::from_value(local).unwrap(), true, false).is_ok());
    }

    #[test]
    fn keys_are_read_once_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let pem = include_str!("../../tests/fixtures/idp_rsa_test_key.pem");
        std::fs::write(&path, pem).unwrap();
        let doc = json!({"name": "a", "app_id": 7, "private_key_file": path.to_str().unwrap()});
        let app = GitHubApp::compile(&serde_json::from_value(doc).unwrap(), false, true).unwrap();
        assert!(app.key.as_ref().unwrap().sign(&json!({"iss": "7"})).is_ok());
        assert_eq!(format!("{:?}", app.key.unwrap()), "AppKey(***)");
        std::fs::write(
            &path,
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let doc = json!({"name": "a", "app_id": 7, "private_key_file": path.to_str().unwrap()});
        let (field, reason) =
            GitHubApp::compile(&serde_json::from_value(doc).unwrap(), false, true).unwrap_err();
        assert_eq!(field, "private_key_file");
        assert!(!reason.contains("c2VjcmV0"), "{reason}");
    }
}
