//! Keys and revocations in the console: the key timeline, a rotation that happens only
//! once confirmed, and tokens revoked by policy.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use sts_broker::config::HumanDuration;

use super::browser::{browser, click, find, set_value, sign_in, text_with};
use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with};

async fn kid_in(app: &TestApp, state: &str) -> String {
    let keys: Value = app
        .admin(Method::GET, "/keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == state)
        .unwrap_or_else(|| panic!("no {state} key: {keys}"))["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn keys_rotate_and_tokens_are_revoked_after_confirmation() {
    let Some(browser) = browser("keys_and_revocations").await else {
        return;
    };
    // A next key may sign once published for jwks_max_age (+1 s): make that short.
    let app = std::sync::Arc::new(
        spawn_app_with(|c| c.jwks_max_age = HumanDuration(Duration::from_secs(1))).await,
    );
    let started = Instant::now();
    let next = kid_in(&app, "next").await;
    let active = kid_in(&app, "active").await;
    let address = app.address.clone();
    let broker = app.clone();
    browser
        .check(move |c| async move {
            sign_in(&c, &address, ADMIN_TOKEN).await;
            c.goto(&format!("{address}/admin/#/keys")).await.unwrap();
            text_with(&c, "li.key.next", &next).await;
            text_with(&c, "li.key.active", &active).await;

            // Cancelled: nothing changes.
            click(&c, "#rotate").await;
            let dialog = text_with(&c, "dialog", "Rotate the signing keys?").await;
            assert!(
                dialog.contains(&next) && dialog.contains(&active),
                "{dialog}"
            );
            click(&c, "dialog button:not(#confirm)").await;
            assert_eq!(kid_in(&broker, "next").await, next);

            tokio::time::sleep_until((started + Duration::from_millis(3100)).into()).await;
            click(&c, "#rotate").await;
            click(&c, "dialog #confirm").await;
            text_with(&c, "li.key.active", &next).await;
            text_with(&c, "li.key.retired", &active).await;
            find(&c, "li.key.next").await;
            assert_eq!(kid_in(&broker, "active").await, next);

            // Every token of a policy, revoked once confirmed, and listed.
            c.goto(&format!("{address}/admin/#/revocations"))
                .await
                .unwrap();
            text_with(&c, "#revocations", "No token is revoked").await;
            set_value(&c, "#revoke-policy", "branches-read").await;
            set_value(&c, "#revoke-reason", "leaked runner").await;
            click(&c, "form[aria-labelledby=\"by-match\"] button[type=submit]").await;
            click(&c, "dialog #confirm").await;
            let rule = text_with(&c, "#revocation-table", "branches-read").await;
            assert!(rule.contains("leaked runner"), "{rule}");
            let rules: Value = broker
                .admin(Method::GET, "/revocations")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                rules["revocations"][0]["policy"], "branches-read",
                "{rules}"
            );
        })
        .await;
}
