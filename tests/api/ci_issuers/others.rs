//! Buildkite, CircleCI, Bitbucket Pipelines and HCP Terraform, each with its claim set and
//! its traps.

use serde_json::{Value, json};

use super::{example, exchange, moved, stamped, with};
use crate::helpers::{FakeIdp, spawn_app_for};

const DEPLOY: &str = "https://deploy.internal.example.com";

#[tokio::test]
async fn buildkite_pins_the_organisation_and_pipeline_by_id() {
    let idp = FakeIdp::start_shaped("", "/.well-known/jwks").await;
    let url = idp.url.clone();
    let text = moved(
        &example("buildkite"),
        "url: https://agent.buildkite.com\n",
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let commit = "4a8d2e1b9c7f6a5e3d2c1b0a9f8e7d6c5b4a3f2e";
    let step = stamped(
        &url,
        json!({
            "sub": format!("organization:acme:pipeline:deploy:ref:refs/heads/main:commit:{commit}:step:deploy"),
            "organization_slug": "acme",
            "pipeline_slug": "deploy",
            "build_number": 1873,
            "build_branch": "main",
            "build_tag": null,
            "build_commit": commit,
            "step_key": "deploy",
            "job_id": "0190a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b",
            "agent_id": "0190a2b3-aaaa-4e6f-8a9b-0c1d2e3f4a5b",
            "organization_id": "0b9b1a4e-3c5d-4e6f-8a7b-9c0d1e2f3a4b",
            "pipeline_id": "018f2c6e-7a1b-4c2d-9e3f-4a5b6c7d8e9f",
        }),
    );
    let issued = exchange(&app, &app.idp.token_rs256(&step), DEPLOY)
        .await
        .unwrap();
    // `build_number` is a JSON number, rendered by its text.
    assert_eq!(issued["sub"], "buildkite:deploy#1873");
    // Ids not asked for (`--claim`) are absent: the policy does not admit the token.
    let without_ids = with(&step, json!({"organization_id": null, "pipeline_id": null}));
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&without_ids), DEPLOY).await,
        Err(400)
    );
    // Another organisation that took the slug `acme` after a rename.
    let squatter = with(
        &step,
        json!({"organization_id": "11111111-2222-4333-8444-555555555555"}),
    );
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&squatter), DEPLOY).await,
        Err(400)
    );
}

#[tokio::test]
async fn circleci_claims_with_slashes_in_their_names() {
    let org = "9f1c2d3e-4b5a-6789-8a7b-6c5d4e3f2a1b";
    let path = format!("/org/{org}");
    let idp = FakeIdp::start_shaped(&path, &format!("{path}/.well-known/jwks-pub.json")).await;
    let url = idp.url.clone();
    let text = moved(
        &example("circleci"),
        &format!("url: https://oidc.circleci.com/org/{org}\n"),
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let project = "3c8a1f2e-9b7d-4e6a-8c5b-1d2e3f4a5b6c";
    let job = with(
        &stamped(
            &url,
            json!({
                "sub": format!("org/{org}/project/{project}/user/6d5c4b3a-2f1e-4d0c-9b8a-7f6e5d4c3b2a"),
                "oidc.circleci.com/project-id": project,
                "oidc.circleci.com/context-ids": [
                    "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                    "7d6c5b4a-3e2f-4a1b-9c8d-0e1f2a3b4c5d",
                ],
                "oidc.circleci.com/vcs-origin": "github.com/acme/api",
                "oidc.circleci.com/vcs-ref": "refs/heads/main",
                "oidc.circleci.com/ssh-rerun": false,
            }),
        ),
        json!({"aud": org}),
    );
    let issued = exchange(&app, &app.idp.token_rs256(&job), DEPLOY)
        .await
        .unwrap();
    assert_eq!(issued["sub"], format!("circleci:{project}"));
    for (change, why) in [
        (
            json!({"oidc.circleci.com/ssh-rerun": true}),
            "someone re-ran it with SSH",
        ),
        (
            json!({"oidc.circleci.com/vcs-ref": "refs/heads/feature"}),
            "another branch",
        ),
        (
            json!({"oidc.circleci.com/context-ids": ["1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"]}),
            "without the production context",
        ),
        (
            json!({"aud": "https://sts.example.com"}),
            "another audience",
        ),
    ] {
        let refused = with(&job, change);
        assert_eq!(
            exchange(&app, &app.idp.token_rs256(&refused), DEPLOY).await,
            Err(400),
            "{why}"
        );
    }
}

#[tokio::test]
async fn bitbucket_pipelines_from_a_workspace_issuer() {
    let path = "/2.0/workspaces/acme/pipelines-config/identity/oidc";
    let idp = FakeIdp::start_shaped(path, &format!("{path}/keys.json")).await;
    let url = idp.url.clone();
    let text = moved(
        &example("bitbucket-pipelines"),
        &format!("url: https://api.bitbucket.org{path}\n"),
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let repository = "{2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d}";
    let environment = "{9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b}";
    let step_uuid = "{5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a}";
    let step = with(
        &stamped(
            &url,
            json!({
                "sub": format!("{repository}:{environment}:{step_uuid}"),
                "accountUuid": "{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
                "workspaceUuid": "{6f7e8d9c-0b1a-4c2d-8e3f-4a5b6c7d8e9f}",
                "repositoryUuid": repository,
                "pipelineUuid": "{8c7b6a5f-4e3d-4c2b-9a1f-0e9d8c7b6a5f}",
                "stepUuid": step_uuid,
                "deploymentEnvironmentUuid": environment,
                "branchName": "main",
            }),
        ),
        json!({"aud": "ari:cloud:bitbucket::workspace/6f7e8d9c-0b1a-4c2d-8e3f-4a5b6c7d8e9f"}),
    );
    let issued = exchange(&app, &app.idp.token_rs256(&step), DEPLOY)
        .await
        .unwrap();
    assert_eq!(issued["sub"], format!("bitbucket:{repository}:{step_uuid}"));
    // A step outside the production deployment environment (a test step of the same branch).
    let test_step = with(&step, json!({"deploymentEnvironmentUuid": null}));
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&test_step), DEPLOY).await,
        Err(400)
    );
}

#[tokio::test]
async fn terraform_cloud_applies_write_and_plans_read() {
    let idp = FakeIdp::start_shaped("", "/.well-known/jwks").await;
    let url = idp.url.clone();
    let text = moved(
        &example("terraform-cloud"),
        "url: https://app.terraform.io\n",
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let api = "https://network-api.internal.example.com";
    let full = "organization:acme:project:Default Project:workspace:network-prod";
    let run = |phase: &str| -> Value {
        stamped(
            &url,
            json!({
                "sub": format!("{full}:run_phase:{phase}"),
                "terraform_run_phase": phase,
                "terraform_workspace_id": "ws-mbsd5E3Ktt5Rg2Xm",
                "terraform_workspace_name": "network-prod",
                "terraform_organization_id": "org-Xb5RkGDd3JfPmJ1c",
                "terraform_organization_name": "acme",
                "terraform_project_id": "prj-vegSA59s1XPwMr2t",
                "terraform_project_name": "Default Project",
                "terraform_run_id": "run-CKuwsxMGgMd4W7Ui",
                "terraform_full_workspace": full,
            }),
        )
    };
    let scope_of = |issued: Value| issued["scope"].as_str().unwrap().to_owned();
    let apply = exchange(&app, &app.idp.token_rs256(&run("apply")), api)
        .await
        .unwrap();
    assert_eq!(scope_of(apply.clone()), "network:write");
    assert_eq!(apply["sub"], format!("tfc:{full}"));
    assert_eq!(apply["run_id"], "run-CKuwsxMGgMd4W7Ui");
    let plan = exchange(&app, &app.idp.token_rs256(&run("plan")), api)
        .await
        .unwrap();
    assert_eq!(scope_of(plan), "network:read");
    // A plan asks for write: the policy that admits plans cannot grant it.
    let response = app
        .exchange(
            &app.idp.token_rs256(&run("plan")),
            Some(api),
            Some("network:write"),
        )
        .await;
    assert_eq!(response.status(), 400);
    // Another organisation's workspace of the same names.
    let other = with(
        &run("apply"),
        json!({"terraform_organization_id": "org-ZZZZZZZZZZZZZZZZ"}),
    );
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&other), api).await,
        Err(400)
    );
}
