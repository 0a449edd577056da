//! GitHub Actions: github.com (guarded events by default, immutable subjects), an
//! enterprise's own issuer, and GitHub Enterprise Server.

use reqwest::Method;
use serde_json::{Value, json};

use super::{example, exchange, explain, moved, stamped, with};
use crate::helpers::{FakeIdp, TestApp, spawn_app_for};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const DEPLOY: &str = "https://deploy.internal.example.com";
const ARTIFACTS: &str = "https://artifacts.internal.example.com";
const TRIAGE: &str = "https://triage.internal.example.com";

/// The claims of a GitHub Actions job of acme/api (immutable subject) in `production`.
fn job(iss: &str) -> Value {
    stamped(
        iss,
        json!({
            "sub": "repo:acme-1342004/api-892174522:environment:production",
            "repository": "acme/api",
            "repository_id": "892174522",
            "repository_owner": "acme",
            "repository_owner_id": "1342004",
            "repository_visibility": "private",
            "actor": "octocat",
            "actor_id": "583231",
            "event_name": "push",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "ref_protected": "true",
            "environment": "production",
            "environment_node_id": "EN_kwDOAbCdEf4AAAABcDeFgH",
            "head_ref": "",
            "base_ref": "",
            "sha": "b7e4c3f1a2d5e6f7081928374656abcdef012345",
            "workflow": "deploy",
            "workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/main",
            "workflow_sha": "b7e4c3f1a2d5e6f7081928374656abcdef012345",
            "job_workflow_ref": "acme/workflows/.github/workflows/deploy.yml@refs/tags/v1.4.2",
            "job_workflow_sha": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
            "run_id": "9821734523",
            "run_number": "412",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "check_run_id": "30512377741",
        }),
    )
}

/// The github.com example, its url kept (so its defaults apply) and its keys at the fake.
async fn github_com() -> TestApp {
    let idp = FakeIdp::start().await;
    let text = moved(
        &example("github-actions"),
        &format!("url: {GITHUB}\n"),
        &format!("url: {GITHUB}\njwks_url: {}/jwks\n", idp.url),
    );
    spawn_app_for(idp, &text, |_| {}).await
}

#[tokio::test]
async fn github_com_deploys_from_main_and_guards_fork_driven_events() {
    let app = github_com().await;
    let token = |claims: &Value| app.idp.token_rs256(claims);
    let push = job(GITHUB);
    let issued = exchange(&app, &token(&push), DEPLOY).await.unwrap();
    assert_eq!(issued["sub"], "github:acme/api:production");
    assert_eq!(issued["client_id"], "github-api-deploy");
    assert_eq!(issued["repository_id"], "892174522");

    // The same job, from a fork's pull request through `pull_request_target` or a
    // `workflow_run` after it: same repository, same subject, refused.
    for event in ["pull_request_target", "workflow_run"] {
        let guarded = with(&push, json!({"event_name": event}));
        assert_eq!(
            exchange(&app, &token(&guarded), DEPLOY).await,
            Err(400),
            "{event}"
        );
        let why = explain(&app, &token(&guarded), DEPLOY).await;
        assert_eq!(why["decision"], "deny");
        let checks = super::checks(&why, "github-api-deploy");
        let guard = checks.iter().find(|c| c.0 == "guarded_events").unwrap();
        assert_eq!(
            (guard.1, guard.2.as_deref()),
            (false, Some(event)),
            "{checks:?}"
        );
        assert!(
            checks
                .iter()
                .filter(|c| c.0 != "guarded_events")
                .all(|c| c.1)
        );
    }
    // A policy that matches `event_name` itself chose to admit it.
    let labeler = with(
        &push,
        json!({
            "sub": "repo:acme-1342004/api-892174522:ref:refs/heads/main",
            "event_name": "pull_request_target",
            "environment": null,
            "job_workflow_ref": "acme/api/.github/workflows/labeler.yml@refs/heads/main",
        }),
    );
    let issued = exchange(&app, &token(&labeler), TRIAGE).await.unwrap();
    assert_eq!(issued["client_id"], "github-pr-labels");
    let push_labeler = with(&labeler, json!({"event_name": "push"}));
    assert_eq!(
        exchange(&app, &token(&push_labeler), TRIAGE).await,
        Err(400)
    );
}

#[tokio::test]
async fn github_com_pins_owners_by_immutable_id_and_never_by_a_look_alike_name() {
    let app = github_com().await;
    let token = |claims: &Value| app.idp.token_rs256(claims);
    let branch = |sub: &str, owner_id: &str| {
        with(
            &job(GITHUB),
            json!({"sub": sub, "repository_owner_id": owner_id, "environment": null}),
        )
    };
    // Any repository of the organisation whose id is 1342004, whatever its name.
    let own = branch(
        "repo:acme@1342004/web@903311990:ref:refs/heads/main",
        "1342004",
    );
    assert!(exchange(&app, &token(&own), ARTIFACTS).await.is_ok());
    let renamed = branch(
        "repo:acme-corp@1342004/web@903311990:ref:refs/heads/main",
        "1342004",
    );
    assert!(exchange(&app, &token(&renamed), ARTIFACTS).await.is_ok());
    // An organisation named `evil-1342004` (old form, or immutable with its own id), or one
    // that took the name `acme`: none of them is 1342004.
    for sub in [
        "repo:evil-1342004/web:ref:refs/heads/main",
        "repo:evil-1342004@66/web@1:ref:refs/heads/main",
        "repo:evil@66/web@1:ref:refs/heads/main",
        "repo:acme/web:ref:refs/heads/main",
        "repo:acme-66/web-1:ref:refs/heads/main",
    ] {
        let attacker = branch(sub, "66");
        assert_eq!(
            exchange(&app, &token(&attacker), ARTIFACTS).await,
            Err(400),
            "{sub}"
        );
    }

    // The shared issuer's owner pin, through the admin API.
    let put = |name: &str, subject: Value| {
        app.admin(Method::PUT, &format!("/policies/{name}"))
            .json(&json!({"issuer": "github-actions", "subject": subject,
                          "grant": {"audience": [ARTIFACTS]}}))
            .send()
    };
    for (subject, accepted) in [
        (
            json!({"glob": "repo:*@1342004/*:ref:refs/heads/main"}),
            true,
        ),
        (
            json!({"glob": "repo:acme-1342004/*:ref:refs/heads/main"}),
            true,
        ),
        (
            json!({"glob": "repo:*-1342004/*:ref:refs/heads/main"}),
            false,
        ),
        (
            json!({"glob": "repo:*@13420*/*:ref:refs/heads/main"}),
            false,
        ),
        (json!({"glob": "repo:**@1342004/**"}), false),
        (json!({"regex": "repo:[a-z-]+@1342004/.*"}), false),
    ] {
        let response = put("owner-pin", subject.clone()).await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if accepted {
            assert!(status == 200 || status == 201, "{subject}: {body}");
        } else {
            assert_eq!(status, 400, "{subject}: {body}");
            assert!(body.to_string().contains("pin an owner"), "{body}");
        }
    }
}

#[tokio::test]
async fn an_enterprise_issuer_is_read_from_its_own_path() {
    // Discovery under `/acme-enterprise`, keys beside it, as GitHub serves them.
    let idp = FakeIdp::start_shaped("/acme-enterprise", "/acme-enterprise/.well-known/jwks").await;
    let url = idp.url.clone();
    let text = moved(
        &example("github-enterprise"),
        &format!("url: {GITHUB}/acme-enterprise\n"),
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let claims = with(
        &job(&url),
        json!({
            "sub": "repo:platform@4410021/billing@77120:ref:refs/heads/main",
            "repository": "platform/billing",
            "repository_owner_id": "4410021",
            "enterprise": "acme-enterprise",
            "enterprise_id": "5501",
            "environment": null,
        }),
    );
    let issued = exchange(&app, &app.idp.token_rs256(&claims), DEPLOY)
        .await
        .unwrap();
    assert_eq!(issued["sub"], "github-enterprise:platform/billing");
    assert!(
        app.idp
            .discovery_hits
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    let other_org = with(
        &claims,
        json!({"sub": "repo:sandbox@4410999/billing@8:ref:refs/heads/main"}),
    );
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&other_org), DEPLOY).await,
        Err(400)
    );
}

#[tokio::test]
async fn an_enterprise_issuer_guards_events_by_default() {
    let idp = FakeIdp::start().await;
    let real = format!("{GITHUB}/acme-enterprise");
    let text = moved(
        &example("github-enterprise"),
        &format!("url: {real}\n"),
        &format!("url: {real}\njwks_url: {}/jwks\n", idp.url),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let claims = with(
        &job(&real),
        json!({"sub": "repo:platform@4410021/billing@77120:ref:refs/heads/main",
               "enterprise_id": "5501", "environment": null}),
    );
    assert!(
        exchange(&app, &app.idp.token_rs256(&claims), DEPLOY)
            .await
            .is_ok()
    );
    let target = with(&claims, json!({"event_name": "pull_request_target"}));
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&target), DEPLOY).await,
        Err(400)
    );
}

#[tokio::test]
async fn github_enterprise_server_guards_the_events_its_issuer_lists() {
    let idp = FakeIdp::start_shaped("/_services/token", "/_services/token/.well-known/jwks").await;
    let url = idp.url.clone();
    let text = moved(
        &example("github-enterprise-server"),
        "url: https://github.acme.example/_services/token\n",
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let apply = with(
        &job(&url),
        json!({
            "sub": "repo:platform/infra:ref:refs/heads/main",
            "repository": "platform/infra",
            "repository_owner": "platform",
            "repository_owner_id": "12",
            "repository_id": "3471",
            "environment": null,
        }),
    );
    let state = "https://terraform-state.internal.example.com";
    let issued = exchange(&app, &app.idp.token_rs256(&apply), state)
        .await
        .unwrap();
    assert_eq!(issued["sub"], "ghes:platform/infra");
    // Same subject, same repository: a `workflow_run` triggered by a fork's pull request.
    let after_fork = with(&apply, json!({"event_name": "workflow_run"}));
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&after_fork), state).await,
        Err(400)
    );
}

#[tokio::test]
async fn the_shipped_github_policies_admit_both_subject_forms() {
    // `policies/github-actions.yaml` as shipped, its keys at the fake.
    let idp = FakeIdp::start().await;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/github-actions.yaml");
    let text = moved(
        &std::fs::read_to_string(path).unwrap(),
        &format!("url: {GITHUB}\n"),
        &format!("url: {GITHUB}\njwks_url: {}/jwks\n", idp.url),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let token = |claims: &Value| app.idp.token_rs256(claims);
    // A repository with the name form: `repo:acme/api:…`.
    let old = with(
        &job(GITHUB),
        json!({"sub": "repo:acme/api:environment:production"}),
    );
    let issued = exchange(&app, &token(&old), DEPLOY).await.unwrap();
    assert_eq!(issued["client_id"], "gha-api-deploy-prod");
    assert_eq!(issued["sub"], "github-actions:acme/api:production");
    // A repository with the immutable form (GitHub's default `-`, or `@`), under its
    // current or a later name.
    for sub in [
        "repo:acme-1342004/web-903311990:environment:staging",
        "repo:acme@1342004/web@903311990:environment:staging",
        "repo:acme-corp@1342004/website@903311990:environment:staging",
    ] {
        let web = with(
            &job(GITHUB),
            json!({"sub": sub, "repository": "acme/web", "repository_id": "903311990",
                   "environment": "staging"}),
        );
        let issued = exchange(&app, &token(&web), DEPLOY).await.unwrap();
        assert_eq!(issued["client_id"], "gha-web-deploy-staging", "{sub}");
    }
    // Look-alikes of either.
    for sub in [
        "repo:evil-1342004/web-903311990:environment:staging",
        "repo:evil@66/web@903311990:environment:staging",
        "repo:acme/web:environment:staging",
    ] {
        let web = with(&job(GITHUB), json!({"sub": sub, "environment": "staging"}));
        assert_eq!(
            exchange(&app, &token(&web), DEPLOY).await,
            Err(400),
            "{sub}"
        );
    }
    // And neither admits what a fork drives.
    let guarded = with(&old, json!({"event_name": "pull_request_target"}));
    assert_eq!(exchange(&app, &token(&guarded), DEPLOY).await, Err(400));
}
