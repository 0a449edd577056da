//! The admin API: documents, concurrency, explanations, audit, and federated admins.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, GRANT, ID_TOKEN, TestApp, spawn_app};

#[tokio::test]
async fn admin_requests_need_credentials_and_scope() {
    let app = spawn_app().await;
    let anonymous = app
        .client
        .get(format!("{}/admin/v1/policies", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = app
        .client
        .get(format!("{}/admin/v1/policies", app.address))
        .bearer_auth("test-admin-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // An ordinary broker token (for another audience) is not an admin credential.
    let token = app.idp.token(&app.idp.claims());
    let issued: Value = app.exchange(&token, None, None).await.json().await.unwrap();
    let not_admin = app
        .client
        .get(format!("{}/admin/v1/policies", app.address))
        .bearer_auth(issued["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(not_admin.status(), 401);
    assert_eq!(
        app.admin(Method::GET, "/policies")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn admins_federate_in_through_a_trust_policy() {
    let app = spawn_app().await;
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
    let bearer = issued["access_token"].as_str().unwrap();
    let read = app
        .client
        .get(format!("{}/admin/v1/policies", app.address))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = app
        .client
        .delete(format!("{}/admin/v1/policies/api-deploy", app.address))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403, "admin:read cannot write");
    // What each credential may do, as the console asks it.
    let whoami = |bearer: Option<&str>| {
        let mut request = app.client.get(format!("{}/admin/v1/whoami", app.address));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    assert_eq!(whoami(None).await.unwrap().status(), 401);
    let reader: Value = whoami(Some(bearer)).await.unwrap().json().await.unwrap();
    assert_eq!(reader["access"], "read", "{reader}");
    assert_eq!(reader["name"], "fake:repo:acme/api:ref:refs/heads/main");
    let bootstrap: Value = whoami(Some(ADMIN_TOKEN))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bootstrap,
        json!({"name": "bootstrap-admin", "access": "write"})
    );
}

#[tokio::test]
async fn documents_are_validated_like_files_and_take_effect_at_once() {
    documents_are_validated_like_files_and_take_effect_at_once_on(spawn_app().await).await;
}

/// The test body, on any broker (`postgres.rs` runs it on PostgreSQL).
pub async fn documents_are_validated_like_files_and_take_effect_at_once_on(app: TestApp) {
    let token = app.idp.token(
        &app.idp
            .claims_with(json!({"sub": "repo:acme/tools:ref:refs/heads/main"})),
    );
    // Nothing grants this audience yet.
    let before = app
        .exchange(&token, Some("https://tools.internal"), None)
        .await;
    assert_eq!(before.status(), 400);

    let bad = json!({"issuer": "fake", "subject": {"regex": "("}, "grant": {"audience": []}});
    let refused = app
        .admin(Method::PUT, "/policies/tools")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    let errors = body["errors"].to_string();
    assert!(errors.contains("does not compile"), "{errors}");
    let missing = app
        .admin(Method::PUT, "/policies/tools")
        .json(&json!({"issuer": "fake"}))
        .send()
        .await
        .unwrap();
    let body: Value = missing.json().await.unwrap();
    assert!(
        body["errors"].to_string().contains("grant: missing field"),
        "{body}"
    );
    let unknown_issuer = app
        .admin(Method::PUT, "/policies/tools")
        .json(&json!({"issuer": "nope", "subject": "x", "grant": {"audience": "a"}}))
        .send()
        .await
        .unwrap();
    let body: Value = unknown_issuer.json().await.unwrap();
    assert!(
        body["errors"].to_string().contains("unknown issuer"),
        "{body}"
    );

    let good = json!({"issuer": "fake", "subject": "repo:acme/tools:ref:refs/heads/main", "grant": {"audience": "https://tools.internal", "scopes": ["read"]}});
    let created = app
        .admin(Method::PUT, "/policies/tools")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["etag"], "\"v1\"");
    let after = app
        .exchange(&token, Some("https://tools.internal"), None)
        .await;
    assert_eq!(after.status(), 200, "in force without restart");

    let replaced = app
        .admin(Method::PUT, "/policies/tools")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let fetched = app
        .admin(Method::GET, "/policies/tools")
        .send()
        .await
        .unwrap();
    assert_eq!(
        fetched.headers()["etag"],
        "\"v1\"",
        "an identical PUT adds no version"
    );
    let doc: Value = fetched.json().await.unwrap();
    assert_eq!(doc["grant"]["audience"], json!(["https://tools.internal"]));

    // An issuer still named by policies cannot be deleted.
    let refused = app
        .admin(Method::DELETE, "/issuers/fake")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        app.admin(Method::DELETE, "/policies/tools")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.exchange(&token, Some("https://tools.internal"), None)
            .await
            .status(),
        400
    );
    let history: Value = app
        .admin(Method::GET, "/policies/tools/history")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["changed_by"], "bootstrap-admin");
    assert!(
        versions[1]["document"].is_null(),
        "the deletion is a version"
    );
    assert_eq!(
        app.admin(Method::GET, "/policies/tools")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn concurrent_edits_one_wins_one_gets_412() {
    concurrent_edits_one_wins_one_gets_412_on(spawn_app().await).await;
}

/// The test body, on any broker (`postgres.rs` runs it on PostgreSQL).
pub async fn concurrent_edits_one_wins_one_gets_412_on(app: TestApp) {
    let current = app
        .admin(Method::GET, "/policies/branches-read")
        .send()
        .await
        .unwrap();
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();
    let mut doc: Value = current.json().await.unwrap();
    doc["description"] = json!("writer A");
    let a = app
        .admin(Method::PUT, "/policies/branches-read")
        .header("if-match", &etag)
        .json(&doc)
        .send();
    let mut doc_b = doc.clone();
    doc_b["description"] = json!("writer B");
    let b = app
        .admin(Method::PUT, "/policies/branches-read")
        .header("if-match", &etag)
        .json(&doc_b)
        .send();
    let (a, b) = tokio::join!(a, b);
    let mut statuses = vec![a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![200, 412]);
    let stale = app
        .admin(Method::DELETE, "/policies/branches-read")
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
}

#[tokio::test]
async fn if_match_compares_strongly_and_answers_412_for_any_tag_that_matches_nothing() {
    let app = spawn_app().await;
    let path = "/policies/branches-read";
    let current = app.admin(Method::GET, path).send().await.unwrap();
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();
    let doc: Value = current.json().await.unwrap();
    let put = |tag: &str| {
        app.admin(Method::PUT, path)
            .header("if-match", tag)
            .json(&doc)
            .send()
    };
    // A weak form of the current tag never matches (strong comparison), nor does a tag this
    // API never gave, nor a list of stale tags: 412, never 400.
    for tag in [
        format!("W/{etag}"),
        "\"something-else\"".to_owned(),
        "\"v0\", \"v999\"".to_owned(),
    ] {
        let response = put(&tag).await.unwrap();
        assert_eq!(response.status(), 412, "If-Match: {tag}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "precondition_failed", "{body}");
    }
    // One matching tag in a list is enough.
    let listed = put(&format!("\"v999\", {etag}")).await.unwrap();
    assert_eq!(listed.status(), 200);
    // Only a header that is not an entity-tag list is a bad request.
    for garbage in ["v1", "\"unterminated", "*, \"v1\""] {
        let response = put(garbage).await.unwrap();
        assert_eq!(response.status(), 400, "If-Match: {garbage}");
    }
    // `*`: the document must exist; creating one under `*` is refused.
    let star = put("*").await.unwrap();
    assert_eq!(star.status(), 200);
    let mut fresh = doc.clone();
    fresh["name"] = json!("created-under-star");
    let created = app
        .admin(Method::PUT, "/policies/created-under-star")
        .header("if-match", "*")
        .json(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 412);
    let deleted = app
        .admin(Method::DELETE, "/policies/created-under-star")
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 412);
}

#[tokio::test]
async fn explain_checks_the_subject_token_type_as_the_token_endpoint_does() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    let explain = |kind: Option<&str>| {
        let mut body = json!({"subject_token": token, "audience": "https://deploy.internal"});
        if let Some(kind) = kind {
            body["subject_token_type"] = json!(kind);
        }
        app.admin(Method::POST, "/explain").json(&body).send()
    };
    for kind in [
        None,
        Some(ID_TOKEN),
        Some("urn:ietf:params:oauth:token-type:jwt"),
    ] {
        let response = explain(kind).await.unwrap();
        assert_eq!(response.status(), 200, "{kind:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["decision"], "allow", "{body}");
    }
    let refused = explain(Some("urn:ietf:params:oauth:token-type:saml2"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn explain_names_the_one_failing_check() {
    let app = spawn_app().await;
    let token = app
        .idp
        .token(&app.idp.claims_with(json!({"workflow": "deploy-evil"})));
    let answer: Value = app
        .admin(Method::POST, "/explain")
        .json(&json!({"subject_token": token, "audience": "https://deploy.internal"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["decision"], "deny");
    let deploy = answer["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == "api-deploy")
        .unwrap();
    assert_eq!(deploy["outcome"], "not_admitted");
    let failed: Vec<&Value> = deploy["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{deploy}");
    assert_eq!(failed[0]["check"], "workflow");
    assert_eq!(failed[0]["actual"], "deploy-evil");
    // The /token answer for the same request reveals none of it.
    let denied: Value = app
        .exchange(&token, Some("https://deploy.internal"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!denied.to_string().contains("workflow"));
    // A token that fails validation is explained too.
    let expired = app
        .idp
        .token(&app.idp.claims_with(json!({"exp": 1000, "iat": 900})));
    let answer: Value = app
        .admin(Method::POST, "/explain")
        .json(&json!({"subject_token": expired}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["reason"], "claims_invalid");
    assert_eq!(answer["message"], "subject token is expired");
}

#[tokio::test]
async fn audit_trail_is_filterable_paginated_and_resolves_request_ids() {
    audit_trail_is_filterable_paginated_and_resolves_request_ids_on(spawn_app().await).await;
}

/// The test body, on any broker (`postgres.rs` runs it on PostgreSQL).
pub async fn audit_trail_is_filterable_paginated_and_resolves_request_ids_on(app: TestApp) {
    let ok = app
        .exchange(&app.idp.token(&app.idp.claims()), None, None)
        .await;
    assert_eq!(ok.status(), 200);
    let denied = app
        .exchange(
            &app.idp.token(
                &app.idp
                    .claims_with(json!({"sub": "repo:other/x:ref:refs/heads/main"})),
            ),
            Some("https://deploy.internal"),
            None,
        )
        .await;
    let denied_id = denied.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        app.exchange("junk", None, None).await;
    }
    let all: Value = app
        .admin(Method::GET, "/audit?kind=exchange")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["events"].as_array().unwrap().len(), 5);
    let allowed: Value = app
        .admin(Method::GET, "/audit?decision=allow")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = allowed["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["policy"], "api-deploy");
    assert!(events[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(events[0]["issued"]["jti"].is_string());
    let by_subject: Value = app
        .admin(
            Method::GET,
            "/audit?subject=repo:other/x:ref:refs/heads/main",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_subject["events"].as_array().unwrap().len(), 1);
    let by_reason: Value = app
        .admin(Method::GET, "/audit?reason=not_admitted")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = by_reason["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{by_reason}");
    assert_eq!(events[0]["request_id"], denied_id.as_str());
    let page1: Value = app
        .admin(Method::GET, "/audit?limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = page1["next"].as_str().unwrap();
    let page2: Value = app
        .admin(Method::GET, &format!("/audit?limit=2&cursor={cursor}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(page1["events"][0]["id"], page2["events"][0]["id"]);
    for bad in [
        "/audit?decision=maybe",
        "/audit?since=yesterday",
        "/audit?limit=100000",
        "/audit?colour=red",
    ] {
        assert_eq!(
            app.admin(Method::GET, bad).send().await.unwrap().status(),
            400,
            "{bad}"
        );
    }
    let one: Value = app
        .admin(Method::GET, &format!("/audit/{denied_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = &one["events"][0];
    assert_eq!(event["decision"], "deny");
    assert!(
        event["detail"]["trace"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{event}"
    );
    assert_eq!(
        app.admin(Method::GET, "/audit/nope")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Admin changes are audited with who and what.
    app.admin(Method::DELETE, "/policies/branches-read")
        .send()
        .await
        .unwrap();
    let changes: Value = app
        .admin(Method::GET, "/audit?kind=admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let change = &changes["events"][0];
    assert_eq!(change["reason"], "delete");
    assert_eq!(change["detail"]["actor"], "bootstrap-admin");
    assert_eq!(change["detail"]["before"]["name"], "branches-read");
}

#[tokio::test]
async fn apply_is_all_or_nothing_and_prunes_on_request() {
    apply_is_all_or_nothing_and_prunes_on_request_on(spawn_app().await).await;
}

/// The test body, on any broker (`postgres.rs` runs it on PostgreSQL).
pub async fn apply_is_all_or_nothing_and_prunes_on_request_on(app: TestApp) {
    let issuer: Value = app
        .admin(Method::GET, "/issuers/fake")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut issuer = issuer;
    issuer["kind"] = json!("Issuer");
    let new_policy = json!({"kind": "TrustPolicy", "name": "new-one", "issuer": "fake", "subject": "x", "grant": {"audience": "a"}});
    let bad_policy = json!({"kind": "TrustPolicy", "name": "bad", "issuer": "fake", "subject": "x", "grant": {"audience": "a", "ttl": "5h"}});
    let refused = app
        .admin(Method::POST, "/apply")
        .json(&json!({"documents": [issuer, new_policy, bad_policy]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        app.admin(Method::GET, "/policies/new-one")
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "nothing applied"
    );
    let dry: Value = app
        .admin(Method::POST, "/apply")
        .json(&json!({"documents": [issuer, new_policy], "prune": true, "dry_run": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["created"], json!(["TrustPolicy/new-one"]));
    assert_eq!(dry["unchanged"], json!(["Issuer/fake"]));
    assert_eq!(
        dry["deleted"],
        json!(["TrustPolicy/api-deploy", "TrustPolicy/branches-read"])
    );
    assert_eq!(dry["applied"], false);
    assert_eq!(
        app.admin(Method::GET, "/policies/api-deploy")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let applied: Value = app
        .admin(Method::POST, "/apply")
        .json(&json!({"documents": [issuer, new_policy], "prune": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(applied["applied"], true);
    assert_eq!(
        app.admin(Method::GET, "/policies/api-deploy")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let token = app.idp.token(&app.idp.claims());
    let params = [
        ("grant_type", GRANT),
        ("subject_token", token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    assert_eq!(
        app.post_token(&params).await.status(),
        400,
        "the pruned policy no longer admits"
    );
}
