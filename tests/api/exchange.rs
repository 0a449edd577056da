//! The exchange as clients see it: success, each matcher, each error code.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};

use crate::helpers::{GRANT, ID_TOKEN, TestApp, expect_error, spawn_app};

#[tokio::test]
async fn issued_token_verifies_with_the_published_keys() {
    issued_token_verifies_with_the_published_keys_on(spawn_app().await).await;
}

/// The test body, on any broker (`postgres.rs` runs it on PostgreSQL).
pub async fn issued_token_verifies_with_the_published_keys_on(app: TestApp) {
    let token = app.idp.token(&app.idp.claims());
    let response = app.exchange(&token, None, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "deploy:write artifacts:read");

    // An independent verifier (jsonwebtoken), keys found the way any client finds them.
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], app.address.as_str());
    let jwks: JwkSet = app
        .client
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is published");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["https://deploy.internal"]);
    validation.set_issuer(&[&app.address]);
    let claims =
        jsonwebtoken::decode::<Value>(access, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("verifies")
            .claims;
    assert_eq!(claims["sub"], "fake:acme/api@refs/heads/main");
    assert_eq!(claims["aud"], "https://deploy.internal");
    assert_eq!(claims["client_id"], "api-deploy");
    assert_eq!(claims["scope"], "deploy:write artifacts:read");
    assert_eq!(
        claims["act"],
        json!({"iss": app.idp.url, "sub": "repo:acme/api:ref:refs/heads/main"})
    );
    assert_eq!(claims["repository"], "acme/api");
    assert_eq!(
        claims["groups"],
        json!(["dev", "ops"]),
        "a single-claim template copies the JSON value"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    let audit = app.audit(&request_id).await;
    assert_eq!(
        audit,
        vec![(
            Some("allow".into()),
            "issued".into(),
            Some("api-deploy".into())
        )]
    );
}

#[tokio::test]
async fn rs256_subject_tokens_are_accepted_and_keys_are_cached() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let token = app.idp.token_rs256(&app.idp.claims());
        assert_eq!(app.exchange(&token, None, None).await.status(), 200);
        let token = app.idp.token(&app.idp.claims());
        assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    }
    assert_eq!(
        app.idp.fetches(),
        2,
        "one discovery and one JWKS fetch for six exchanges"
    );
}

#[tokio::test]
async fn each_matcher_admits_exactly_what_it_says() {
    let app = spawn_app().await;
    let idp = &app.idp;
    let (deploy, branches) = (
        ("api-deploy", "https://deploy.internal"),
        ("branches-read", "https://logs.internal"),
    );
    // (name, claim changes, (policy, audience), admitted)
    let rows: Vec<(&str, Value, (&str, &str), bool)> = vec![
        ("all match", json!({}), deploy, true),
        (
            "number compared by JSON text",
            json!({"repository_id": 1001}),
            deploy,
            true,
        ),
        (
            "exact mismatch",
            json!({"repository_id": "1002"}),
            deploy,
            false,
        ),
        (
            "absent claim never matches",
            json!({"repository_id": null}),
            deploy,
            false,
        ),
        (
            "regex alternation anchored",
            json!({"workflow": "deploy-evil"}),
            deploy,
            false,
        ),
        (
            "regex prefix anchored",
            json!({"workflow": "my-deploy"}),
            deploy,
            false,
        ),
        (
            "regex other alternative",
            json!({"workflow": "release"}),
            deploy,
            true,
        ),
        ("one_of hit", json!({"run_attempt": "2"}), deploy, true),
        ("one_of miss", json!({"run_attempt": "3"}), deploy, false),
        (
            "subject exact",
            json!({"sub": "repo:acme/api-evil:ref:refs/heads/main"}),
            deploy,
            false,
        ),
        (
            "glob star within a segment",
            json!({"sub": "repo:acme/web:ref:refs/heads/dev"}),
            branches,
            true,
        ),
        (
            "glob star never crosses /",
            json!({"sub": "repo:acme/web:ref:refs/heads/a/b"}),
            branches,
            false,
        ),
        (
            "glob star never crosses :",
            json!({"sub": "repo:acme/web:x:ref:refs/heads/dev"}),
            branches,
            false,
        ),
        (
            "case variants differ",
            json!({"sub": "repo:ACME/web:ref:refs/heads/dev"}),
            branches,
            false,
        ),
        (
            "unicode look-alike differs",
            json!({"sub": "repo:\u{0430}cme/web:ref:refs/heads/dev"}),
            branches,
            false,
        ),
    ];
    for (name, changes, (policy, audience), admitted) in rows {
        let token = idp.token(&idp.claims_with(changes));
        let params = [
            ("grant_type", GRANT),
            ("subject_token", token.as_str()),
            ("subject_token_type", ID_TOKEN),
            ("policy", policy),
            ("audience", audience),
        ];
        let response = app.post_token(&params).await;
        if admitted {
            assert_eq!(response.status(), 200, "{name}");
        } else {
            let body = expect_error(response, 400, "invalid_request").await;
            assert_eq!(
                body["error_description"], "no trust policy admits the subject token",
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn template_naming_an_absent_claim_does_not_admit() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims_with(json!({"groups": null})));
    let params = [
        ("grant_type", GRANT),
        ("subject_token", token.as_str()),
        ("subject_token_type", ID_TOKEN),
        ("policy", "api-deploy"),
    ];
    expect_error(app.post_token(&params).await, 400, "invalid_request").await;
}

#[tokio::test]
async fn audience_and_scope_selection() {
    let app = spawn_app().await;
    let feature = app
        .idp
        .claims_with(json!({"sub": "repo:acme/web:ref:refs/heads/feature"}));
    // The admitting policy grants two audiences: one must be chosen.
    let body = expect_error(
        app.exchange(&app.idp.token(&feature), None, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("audience")
    );
    let ok = app
        .exchange(
            &app.idp.token(&feature),
            Some("https://logs.internal"),
            None,
        )
        .await;
    assert_eq!(ok.status(), 200);
    expect_error(
        app.exchange(
            &app.idp.token(&feature),
            Some("https://other.internal"),
            None,
        )
        .await,
        400,
        "invalid_target",
    )
    .await;
    let main = app.idp.claims();
    let narrowed: Value = app
        .exchange(&app.idp.token(&main), None, Some("artifacts:read"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(narrowed["scope"], "artifacts:read");
    expect_error(
        app.exchange(&app.idp.token(&main), None, Some("deploy:write admin"))
            .await,
        400,
        "invalid_scope",
    )
    .await;
    // api-deploy cannot grant the artifacts audience, but branches-read (next in name order) can.
    let next: Value = app
        .exchange(
            &app.idp.token(&main),
            Some("https://artifacts.internal"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["scope"], "artifacts:read");
}

#[tokio::test]
async fn the_policy_parameter_evaluates_only_that_policy() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    let params = |policy| {
        vec![
            ("grant_type", GRANT),
            ("subject_token", token.as_str()),
            ("subject_token_type", ID_TOKEN),
            ("policy", policy),
            ("audience", "https://logs.internal"),
        ]
    };
    assert_eq!(app.post_token(&params("branches-read")).await.status(), 200);
    expect_error(
        app.post_token(&params("api-deploy")).await,
        400,
        "invalid_target",
    )
    .await;
    expect_error(
        app.post_token(&params("no-such-policy")).await,
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn every_denial_is_audited_with_the_request_id() {
    every_denial_is_audited_with_the_request_id_on(spawn_app().await).await;
}

/// The test body, on any broker (`postgres.rs` runs it on PostgreSQL).
/// Expects a 400 with `error`; returns the audit rows of its request id.
async fn audited_denial(
    app: &TestApp,
    response: reqwest::Response,
    error: &str,
) -> Vec<(Option<String>, String, Option<String>)> {
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    expect_error(response, 400, error).await;
    app.audit(&id).await
}

pub async fn every_denial_is_audited_with_the_request_id_on(app: TestApp) {
    let deny = |reason: &str, policy: Option<&str>| {
        vec![(
            Some("deny".to_owned()),
            reason.to_owned(),
            policy.map(str::to_owned),
        )]
    };
    let outsider = app.idp.token(
        &app.idp
            .claims_with(json!({"sub": "repo:other/x:ref:refs/heads/main"})),
    );
    let response = app
        .exchange(&outsider, Some("https://deploy.internal"), None)
        .await;
    assert_eq!(
        audited_denial(&app, response, "invalid_request").await,
        deny("not_admitted", None)
    );
    // Admitted, but the audience is not granted: recorded under the policy that admitted
    // it (the first in name order), so audit queries by policy show the denial.
    let token = app.idp.token(&app.idp.claims());
    let response = app
        .exchange(&token, Some("https://nope.internal"), None)
        .await;
    assert_eq!(
        audited_denial(&app, response, "invalid_target").await,
        deny("audience_not_granted", Some("api-deploy"))
    );
    // Not admitted by the policy the client named: recorded under no policy (naming one
    // must not file denials under it), whether or not the name is a policy.
    for (named, recorded) in [("branches-read", None::<&str>), ("no-such", None)] {
        let response = app
            .post_token(&[
                ("grant_type", GRANT),
                ("subject_token", &outsider),
                ("subject_token_type", ID_TOKEN),
                ("policy", named),
            ])
            .await;
        assert_eq!(
            audited_denial(&app, response, "invalid_request").await,
            deny("not_admitted", recorded),
            "{named}"
        );
    }
    let garbage = app.exchange("not-a-token", None, None).await;
    assert_eq!(
        audited_denial(&app, garbage, "invalid_request").await,
        deny("token_malformed", None)
    );
}

#[tokio::test]
async fn octo_sts_shape() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    let url = format!(
        "{}/sts/exchange?scope=https://logs.internal&identity=branches-read",
        app.address
    );
    let response = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1);
    assert!(body["token"].as_str().unwrap().split('.').count() == 3);
    let post = app
        .client
        .post(format!(
            "{}/sts/exchange?scopes=https://logs.internal&identity=branches-read",
            app.address
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    let denied = app
        .client
        .get(format!(
            "{}/sts/exchange?scope=https://logs.internal&identity=api-deploy",
            app.address
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 400);
    let body: Value = denied.json().await.unwrap();
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(body["error"], "invalid_target");
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
