//! The web console at `/admin/`: what the server sends (headers, assets), and the console
//! itself in a real browser (headless Chromium over WebDriver; skipped without one).

mod browser;
mod decisions;
mod documents;
mod keys;
mod screenshots;
mod server;
mod session;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A broker token with `admin:read` only, through a trust policy as admins federate in.
pub async fn read_only_token(app: &TestApp) -> String {
    let admin_aud = format!("{}/admin", app.address);
    let policy = json!({
        "issuer": "fake",
        "subject": "repo:acme/api:ref:refs/heads/main",
        "claims": {"repository_owner_id": "2001"},
        "grant": {"audience": [admin_aud], "scopes": ["admin:read"]},
    });
    let created = app
        .admin(Method::PUT, "/policies/aa-admins-read")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let token = app.idp.token(&app.idp.claims());
    let issued: Value = app
        .exchange(&token, Some(&admin_aud), None)
        .await
        .json()
        .await
        .unwrap();
    issued["access_token"].as_str().unwrap().to_owned()
}
