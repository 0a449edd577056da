//! Signing in: a refused token says so, the token never reaches a URL, and a token with
//! `admin:read` only sees everything with no write controls.

use fantoccini::Client;

use super::browser::{browser, click, css, find, sign_in, text_with};
use super::read_only_token;
use crate::helpers::{ADMIN_TOKEN, spawn_app};

#[tokio::test]
async fn signing_in_keeps_the_token_out_of_urls_and_readers_get_no_write_controls() {
    let Some(browser) = browser("signing_in").await else {
        return;
    };
    let app = spawn_app().await;
    let reader = read_only_token(&app).await;
    let address = app.address.clone();
    browser
        .check(move |c| async move {
            // A wrong token is refused, in words.
            c.goto(&format!("{address}/admin/")).await.unwrap();
            let input = find(&c, "#token").await;
            input.send_keys("not-the-token\u{E007}").await.unwrap();
            text_with(&c, "#signin-error", "does not accept").await;

            // The bootstrap token: every section, and write controls.
            sign_in(&c, &address, ADMIN_TOKEN).await;
            text_with(&c, "#who", "bootstrap-admin").await;
            // The overview: readiness, the documents, the keys, the day's decisions.
            text_with(&c, "#card-ready + div", "ready").await;
            text_with(
                &c,
                "section[aria-labelledby=\"card-policies\"]",
                "branches-read",
            )
            .await;
            find(&c, "svg.chart").await;
            c.goto(&format!("{address}/admin/#/policies"))
                .await
                .unwrap();
            find(&c, "#new-document").await;
            assert_no_token_in_url(&c).await;
            // Kept for the tab: a reload stays signed in.
            c.refresh().await.unwrap();
            find(&c, "#documents").await;
            click(&c, "#signout").await;
            find(&c, "#token").await;

            // admin:read: sees the policies and keys, gets no button that would change them.
            sign_in(&c, &address, &reader).await;
            find(&c, "#read-only").await;
            c.goto(&format!("{address}/admin/#/policies/api-deploy"))
                .await
                .unwrap();
            text_with(&c, "#yaml", "name: api-deploy").await;
            assert!(c.find(css("#edit")).await.is_err(), "no Edit for a reader");
            c.goto(&format!("{address}/admin/#/policies"))
                .await
                .unwrap();
            find(&c, "#documents").await;
            assert!(c.find(css("#new-document")).await.is_err());
            c.goto(&format!("{address}/admin/#/keys")).await.unwrap();
            find(&c, "ol.timeline").await;
            assert!(
                c.find(css("#rotate")).await.is_err(),
                "no Rotate for a reader"
            );
            assert_no_token_in_url(&c).await;
        })
        .await;
}

async fn assert_no_token_in_url(c: &Client) {
    let url = c.current_url().await.unwrap();
    assert!(!url.as_str().contains(ADMIN_TOKEN), "{url}");
    assert!(!url.as_str().contains("token="), "{url}");
}
