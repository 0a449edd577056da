//! The README's pictures of the console, taken from a real run: with
//! `STS_CONSOLE_SCREENSHOTS=docs` this test writes one PNG per main page there (and a
//! phone-sized overview); without it, it only says how.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::json;
use sts_broker::config::HumanDuration;

use super::browser::{browser, click, find, set_value, sign_in, text_with};
use crate::helpers::{ADMIN_TOKEN, spawn_app_with};

/// Resizes the window so the viewport holds the whole page (at `width`), then saves it as
/// `console-{name}.png`.
async fn shoot(c: &Client, dir: &Path, name: &str, width: u32) {
    // Let fonts and the last answers settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.set_window_size(width, 600).await.unwrap();
    let measure = async || {
        let v = c
            .execute(
                "return [window.outerHeight - window.innerHeight, document.documentElement.scrollHeight]",
                vec![],
            )
            .await
            .unwrap();
        (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(900))
    };
    let (chrome, page) = measure().await;
    let height = (chrome + page).clamp(500, 3000) as u32;
    c.set_window_size(width, height).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

#[tokio::test]
async fn console_screenshots_for_the_readme() {
    let Some(dir) = std::env::var_os("STS_CONSOLE_SCREENSHOTS").map(PathBuf::from) else {
        eprintln!("console screenshots: set STS_CONSOLE_SCREENSHOTS=docs to write them");
        return;
    };
    let Some(browser) = browser("screenshots").await else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let app = spawn_app_with(|c| c.jwks_max_age = HumanDuration(Duration::from_secs(1))).await;
    let started = Instant::now();
    // A day's worth of traffic, in miniature: allowed and denied exchanges.
    let idp = &app.idp;
    for _ in 0..9 {
        app.exchange(&idp.token(&idp.claims()), None, None).await;
    }
    for _ in 0..4 {
        let other = idp.claims_with(json!({"sub": "repo:acme/web:ref:refs/heads/dev"}));
        app.exchange(&idp.token(&other), Some("https://logs.internal"), None)
            .await;
    }
    for _ in 0..3 {
        let retry = idp.claims_with(json!({"run_attempt": "3"}));
        app.exchange(&idp.token(&retry), Some("https://deploy.internal"), None)
            .await;
    }
    app.exchange(
        &idp.token(&idp.claims()),
        Some("https://deploy.internal"),
        Some("admin:everything"),
    )
    .await;
    app.exchange("not-a-token", None, None).await;
    let denied = idp.token(&idp.claims_with(json!({"run_attempt": "3"})));
    let address = app.address.clone();
    tokio::time::sleep_until((started + Duration::from_millis(3100)).into()).await;
    browser
        .check(move |c| async move {
            sign_in(&c, &address, ADMIN_TOKEN).await;
            // A rotation first, so the key timeline has all three states.
            c.goto(&format!("{address}/admin/#/keys")).await.unwrap();
            click(&c, "#rotate").await;
            click(&c, "dialog #confirm").await;
            find(&c, "li.key.retired").await;
            c.execute(
                "document.getElementById('status').replaceChildren()",
                vec![],
            )
            .await
            .unwrap();
            shoot(&c, &dir, "keys", 1280).await;

            c.goto(&format!("{address}/admin/#/")).await.unwrap();
            find(&c, "svg.chart").await;
            find(&c, "table.reasons").await;
            shoot(&c, &dir, "overview", 1280).await;

            c.goto(&format!("{address}/admin/#/policies"))
                .await
                .unwrap();
            find(&c, "#documents").await;
            shoot(&c, &dir, "policies", 1280).await;

            c.goto(&format!("{address}/admin/#/policies/api-deploy/edit"))
                .await
                .unwrap();
            find(&c, "#document").await;
            let text = c
                .execute("return document.querySelector('#document').value", vec![])
                .await
                .unwrap();
            let edited = text.as_str().unwrap().replace("ttl: 10m", "ttl: 2h");
            set_value(&c, "#document", &edited).await;
            click(&c, "#run-preview").await;
            // Too long a ttl: the preview refuses the candidate, shown at its field.
            find(&c, ".problem[data-path=\"grant.ttl\"]").await;
            click(&c, "#save").await;
            find(&c, ".problem[data-path=\"grant.ttl\"]").await;
            shoot(&c, &dir, "editor", 1280).await;

            c.goto(&format!("{address}/admin/#/explain")).await.unwrap();
            set_value(&c, "#subject", &denied).await;
            click(&c, "details summary").await;
            set_value(&c, "#audience", "https://deploy.internal").await;
            click(&c, "#explain").await;
            text_with(&c, "#verdict", "Denied").await;
            shoot(&c, &dir, "explain", 1280).await;

            c.goto(&format!("{address}/admin/#/audit")).await.unwrap();
            find(&c, "#audit-table").await;
            shoot(&c, &dir, "audit", 1280).await;

            c.goto(&format!("{address}/admin/#/revocations"))
                .await
                .unwrap();
            set_value(&c, "#revoke-policy", "branches-read").await;
            set_value(&c, "#revoke-reason", "runner image compromised").await;
            click(&c, "#revoke-policy").await;
            find(&c, "form[aria-labelledby=\"by-match\"] button[type=submit]")
                .await
                .click()
                .await
                .unwrap();
            click(&c, "dialog #confirm").await;
            find(&c, "#revocation-table").await;
            c.execute(
                "document.getElementById('status').replaceChildren()",
                vec![],
            )
            .await
            .unwrap();
            shoot(&c, &dir, "revocations", 1280).await;

            c.goto(&format!("{address}/admin/#/")).await.unwrap();
            find(&c, "table.reasons").await;
            shoot(&c, &dir, "phone", 390).await;
        })
        .await;
}
