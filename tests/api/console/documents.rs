//! Policies in the console: listed and searched; edited as YAML with the broker's
//! validation errors shown at their field; checked, previewed and saved with `If-Match`;
//! a conflicting save shown rather than overwriting; the history's diff.

use std::sync::Arc;

use fantoccini::Client;
use reqwest::Method;
use serde_json::{Value, json};

use super::browser::{browser, click, css, find, set_value, sign_in, text_with};
use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app};

/// The editor's text.
async fn editor_text(c: &Client) -> String {
    find(c, "#document").await;
    c.execute("return document.querySelector('#document').value", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// The 1-based line of the first line of `text` that starts (after indentation) with `key`.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        + 1
}

/// Asserts that the problem at `path` is shown at `line` (in the list and in the gutter)
/// and says `message`.
async fn assert_problem_at(c: &Client, path: &str, line: usize, message: &str) {
    let selector = format!(".problem[data-path=\"{path}\"]");
    let text = text_with(c, &selector, message).await;
    assert!(text.contains(&format!("Line {line}")), "{text}");
    let marked = c
        .execute(
            "return [...document.querySelectorAll('.gutter .bad')].map(e => e.textContent)",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        marked
            .as_array()
            .unwrap()
            .contains(&json!(line.to_string())),
        "line {line} is not marked: {marked}"
    );
    let invalid = find(c, "#document")
        .await
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
}

async fn stored(app: &TestApp, name: &str) -> Value {
    app.admin(Method::GET, &format!("/policies/{name}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn policies_are_listed_searched_and_saved_with_errors_at_their_field() {
    let Some(browser) = browser("policies_edit").await else {
        return;
    };
    let app = Arc::new(spawn_app().await);
    let address = app.address.clone();
    let broker = app.clone();
    let checks = move |c: Client| async move {
        sign_in(&c, &address, ADMIN_TOKEN).await;
        c.goto(&format!("{address}/admin/#/policies"))
            .await
            .unwrap();
        text_with(&c, "#documents", "api-deploy").await;
        text_with(&c, "#documents", "branches-read").await;
        set_value(&c, "#search", "artifacts.internal").await;
        text_with(&c, "#count", "1 of 2").await;
        let visible = c
            .execute(
                "return [...document.querySelectorAll('#documents tbody tr')].filter(r => !r.hidden).map(r => r.dataset.name)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(visible, json!(["branches-read"]));

        c.goto(&format!("{address}/admin/#/policies/api-deploy"))
            .await
            .unwrap();
        text_with(&c, "#yaml", "ttl: 10m").await;
        click(&c, "#edit").await;
        let original = editor_text(&c).await;
        assert!(
            original.starts_with("kind: TrustPolicy\nname: api-deploy\n"),
            "{original}"
        );

        // A field the schema does not have: refused at its line.
        let unknown = original.replace("  ttl: 10m\n", "  ttl: 10m\n  colour: blue\n");
        set_value(&c, "#document", &unknown).await;
        click(&c, "#save").await;
        assert_problem_at(
            &c,
            "grant.colour",
            line_of(&unknown, "colour:"),
            "unknown field",
        )
        .await;

        // A ttl above max_ttl (1h): the policy set's check, at the ttl's line.
        let too_long = original.replace("ttl: 10m", "ttl: 2h");
        set_value(&c, "#document", &too_long).await;
        click(&c, "#save").await;
        assert_problem_at(&c, "grant.ttl", line_of(&too_long, "ttl:"), "ttl").await;
        assert_eq!(stored(&broker, "api-deploy").await["grant"]["ttl"], "10m");

        // Fixed: checked without saving, previewed, then saved over the version read.
        let fixed = original.replace("ttl: 10m", "ttl: 5m");
        set_value(&c, "#document", &fixed).await;
        click(&c, "#check").await;
        text_with(&c, "#check-ok", "Valid").await;
        text_with(&c, "#notes pre.diff", "+   ttl: 5m").await;
        assert!(c.find(css(".problem")).await.is_err(), "problems cleared");
        click(&c, "#run-preview").await;
        // The recorded decisions re-decided under the edit: a ttl changes none of them.
        text_with(&c, "#preview-result", "0 would change").await;
        click(&c, "#save").await;
        text_with(&c, ".meta", "v2").await;
        text_with(&c, "#yaml", "ttl: 5m").await;

        // The history shows the change.
        c.goto(&format!("{address}/admin/#/policies/api-deploy/history"))
            .await
            .unwrap();
        let diff = text_with(&c, "#diff", "+   ttl: 5m").await;
        assert!(diff.contains("-   ttl: 10m"), "{diff}");

        // A new policy starts from a template, and needs a name.
        c.goto(&format!("{address}/admin/#/policies"))
            .await
            .unwrap();
        click(&c, "#new-document").await;
        let template = editor_text(&c).await;
        assert!(template.contains("issuer: fake"), "{template}");
        click(&c, "#save").await;
        assert_problem_at(&c, "name", 2, "a name is required").await;
        let new = "kind: TrustPolicy\nname: tools\nissuer: fake\nsubject: repo:acme/tools:ref:refs/heads/main\ngrant: {audience: [https://tools.internal]}\n";
        set_value(&c, "#document", new).await;
        click(&c, "#save").await;
        text_with(&c, ".meta", "v1").await;
        text_with(&c, "#yaml", "name: tools").await;
    };
    browser.check(checks).await;
    assert_eq!(stored(&app, "api-deploy").await["grant"]["ttl"], "5m");
}

#[tokio::test]
async fn a_conflicting_save_is_shown_and_overwrites_nothing() {
    let Some(browser) = browser("policies_conflict").await else {
        return;
    };
    let app = Arc::new(spawn_app().await);
    let address = app.address.clone();
    let broker = app.clone();
    browser
        .check(move |c| async move {
            sign_in(&c, &address, ADMIN_TOKEN).await;
            c.goto(&format!("{address}/admin/#/policies/branches-read/edit"))
                .await
                .unwrap();
            let mine = editor_text(&c).await.replace(
                "scopes: [artifacts:read]",
                "scopes: [artifacts:read, logs:read]",
            );
            set_value(&c, "#document", &mine).await;

            // Another admin saves first.
            let mut theirs = stored(&broker, "branches-read").await;
            theirs["description"] = json!("changed by someone else");
            let saved = broker
                .admin(Method::PUT, "/policies/branches-read")
                .json(&theirs)
                .send()
                .await
                .unwrap();
            assert_eq!(saved.status(), 200);

            click(&c, "#save").await;
            let notice = text_with(&c, "#conflict-notice", "changed since you opened it").await;
            assert!(notice.contains("Your edit was not saved"), "{notice}");
            text_with(&c, "#conflict-notice pre.diff", "changed by someone else").await;
            let now = stored(&broker, "branches-read").await;
            assert_eq!(
                now["description"], "changed by someone else",
                "not overwritten"
            );
            assert_eq!(now["grant"]["scopes"], json!(["artifacts:read"]));
            assert_eq!(editor_text(&c).await, mine, "the edit is kept");

            // Saving over theirs is a choice made after seeing it.
            click(&c, "#conflict-keep").await;
            click(&c, "#save").await;
            text_with(&c, ".meta", "v3").await;
            let now = stored(&broker, "branches-read").await;
            assert_eq!(
                now["grant"]["scopes"],
                json!(["artifacts:read", "logs:read"])
            );
        })
        .await;
}
