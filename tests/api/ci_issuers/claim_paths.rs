//! Claim paths and guarded events on the test issuer, through the admin API and `/token`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{POLICIES, TestApp, claims_of, spawn_app_full};

const API: &str = "https://api.internal";

async fn put(app: &TestApp, name: &str, doc: Value) -> (u16, Value) {
    let response = app
        .admin(Method::PUT, &format!("/policies/{name}"))
        .json(&doc)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn pointers_in_claims_and_templates() {
    let app = spawn_app_full(POLICIES, |_| {}).await;
    let (status, body) = put(
        &app,
        "aa-first-group",
        json!({
            "issuer": "fake",
            "claims": {"/groups/0": "dev", "/repository_id": "1001"},
            "grant": {"audience": [API], "subject": "{/groups/1}",
                      "claims": {"first": "{/groups/0}", "all": "{groups}"}},
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = app.idp.token(&app.idp.claims());
    let response = app.exchange(&token, Some(API), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let issued = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(issued["sub"], "fake:ops");
    assert_eq!(issued["first"], "dev");
    assert_eq!(issued["all"], json!(["dev", "ops"]));
    // The order of an array is part of the claim.
    let swapped = app
        .idp
        .token(&app.idp.claims_with(json!({"groups": ["ops", "dev"]})));
    assert_eq!(app.exchange(&swapped, Some(API), None).await.status(), 400);
    // A path past the end of the array: absent, so the template cannot render.
    let short = app
        .idp
        .token(&app.idp.claims_with(json!({"groups": ["dev"]})));
    assert_eq!(app.exchange(&short, Some(API), None).await.status(), 400);

    // A bad escape is refused, with the key as written.
    let (status, body) = put(
        &app,
        "bad-pointer",
        json!({"issuer": "fake", "claims": {"/groups/~2": "dev"}, "grant": {"audience": [API]}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("/groups/~2"), "{body}");
}

#[tokio::test]
async fn a_pointer_to_an_owner_id_pins_the_owner_of_a_shared_issuer() {
    let policies = POLICIES.replace(
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, RS256]\nshared: true",
    );
    let app = spawn_app_full(&policies, |_| {}).await;
    let policy = |claims: Value| {
        json!({"issuer": "fake", "subject": {"glob": "repo:**"}, "claims": claims,
               "grant": {"audience": [API]}})
    };
    let (status, body) = put(
        &app,
        "by-pointer",
        policy(json!({"/repository_owner_id": "2001"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(
        &app,
        "nested",
        policy(json!({"/owner/repository_owner_id": "2001"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn an_issuer_guards_the_events_it_lists() {
    let policies = POLICIES.replace(
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, RS256]\nguarded_events: [pull_request_target]",
    );
    let app = spawn_app_full(&policies, |_| {}).await;
    let event = |name: &str| {
        app.idp
            .token(&app.idp.claims_with(json!({"event_name": name})))
    };
    let deploy = "https://deploy.internal";
    assert_eq!(
        app.exchange(&event("push"), Some(deploy), None)
            .await
            .status(),
        200
    );
    let refused = app
        .exchange(&event("pull_request_target"), Some(deploy), None)
        .await;
    assert_eq!(refused.status(), 400);
    let request_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let records = app.audit_records(&request_id).await;
    assert_eq!(records[0]["reason"], "not_admitted", "{records:?}");
    // The Issuer document keeps what was written: `[]` is not the same as absent.
    let issuer: Value = app
        .admin(Method::GET, "/issuers/fake")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        issuer["guarded_events"],
        json!(["pull_request_target"]),
        "{issuer}"
    );
}
