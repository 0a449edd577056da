//! Decisions in the console: a denied token explained check by check, a decision found by
//! its request id, and markup in an audit record shown as text that runs nothing.

use serde_json::json;

use super::browser::{browser, click, css, find, set_value, sign_in, text_with};
use crate::helpers::{ADMIN_TOKEN, spawn_app};

#[tokio::test]
async fn explain_shows_the_failing_check_of_a_denied_token() {
    let Some(browser) = browser("explain_token").await else {
        return;
    };
    let app = spawn_app().await;
    // api-deploy wants run_attempt 1 or 2.
    let token = app
        .idp
        .token(&app.idp.claims_with(json!({"run_attempt": "3"})));
    let address = app.address.clone();
    browser
        .check(move |c| async move {
            sign_in(&c, &address, ADMIN_TOKEN).await;
            c.goto(&format!("{address}/admin/#/explain")).await.unwrap();
            set_value(&c, "#subject", &token).await;
            click(&c, "details summary").await;
            set_value(&c, "#audience", "https://deploy.internal").await;
            click(&c, "#explain").await;
            text_with(&c, "#verdict", "Denied").await;
            let trace = "section.trace[data-policy=\"api-deploy\"]";
            text_with(&c, trace, "does not admit").await;
            let failing = find(&c, &format!("{trace} tr.fail"))
                .await
                .text()
                .await
                .unwrap();
            assert!(failing.contains("run_attempt"), "{failing}");
            assert!(
                failing.contains('3') && failing.contains("fail"),
                "{failing}"
            );
            let passing = c.find_all(css(&format!("{trace} tr.pass"))).await.unwrap();
            assert!(!passing.is_empty(), "the checks that passed are shown too");
        })
        .await;
}

#[tokio::test]
async fn a_decision_is_found_by_request_id() {
    let Some(browser) = browser("find_request_id").await else {
        return;
    };
    let app = spawn_app().await;
    let denied = app
        .exchange(
            &app.idp
                .token(&app.idp.claims_with(json!({"repository_id": "666"}))),
            Some("https://deploy.internal"),
            None,
        )
        .await;
    assert_eq!(denied.status(), 400);
    let request_id = denied.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Others around it, so the search has something to tell apart.
    for _ in 0..3 {
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await;
    }
    let address = app.address.clone();
    let broker = std::sync::Arc::new(app);
    browser
        .check(move |c| async move {
            sign_in(&c, &address, ADMIN_TOKEN).await;
            c.goto(&format!("{address}/admin/#/audit")).await.unwrap();
            text_with(&c, "#audit-table", "issued").await;
            // The live tail adds what is decided meanwhile.
            click(&c, "#live").await;
            let later = broker
                .exchange(&broker.idp.token(&broker.idp.claims()), None, None)
                .await;
            let later_id = later.headers()["x-request-id"].to_str().unwrap().to_owned();
            find(
                &c,
                &format!("#audit-table tr.fresh[data-request-id=\"{later_id}\"]"),
            )
            .await;

            set_value(&c, "#request-id", &request_id).await;
            click(&c, "#search").await;
            let row = format!("#audit-table tr[data-request-id=\"{request_id}\"]");
            text_with(&c, &row, "deny").await;
            let rows = c
                .find_all(css("#audit-table tbody tr:not(.detail)"))
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            // From the record to its explanation: the recorded trace names the failed check.
            click(&c, &format!("{row} a")).await;
            text_with(&c, "#verdict", "Denied").await;
            let failing = find(&c, "section.trace[data-policy=\"api-deploy\"] tr.fail")
                .await
                .text()
                .await
                .unwrap();
            assert!(
                failing.contains("repository_id") && failing.contains("666"),
                "{failing}"
            );
        })
        .await;
}

#[tokio::test]
async fn markup_in_an_audit_record_is_shown_as_text() {
    let Some(browser) = browser("markup_as_text").await else {
        return;
    };
    let app = spawn_app().await;
    let markup = r#"<img src=x onerror="window.__pwned=1;document.title='pwned'">"#;
    let denied = app
        .exchange(
            &app.idp.token(
                &app.idp
                    .claims_with(json!({"sub": markup, "workflow": markup})),
            ),
            Some("https://deploy.internal"),
            None,
        )
        .await;
    let request_id = denied.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let address = app.address.clone();
    browser
        .check(move |c| async move {
            sign_in(&c, &address, ADMIN_TOKEN).await;
            c.goto(&format!("{address}/admin/#/audit")).await.unwrap();
            let subject = format!("#audit-table tr[data-request-id=\"{request_id}\"] td.subject");
            text_with(&c, &subject, markup).await;
            c.goto(&format!("{address}/admin/#/explain?request_id={request_id}"))
                .await
                .unwrap();
            text_with(&c, "#decision", markup).await;
            // Give an image error handler every chance to run, then look for its traces.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let ran = c
                .execute(
                    "return [window.__pwned === undefined, document.querySelectorAll('main img').length, document.title]",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(ran[0], json!(true), "{ran}");
            assert_eq!(ran[1], json!(0), "{ran}");
            assert_ne!(ran[2], json!("pwned"), "{ran}");
        })
        .await;
}
