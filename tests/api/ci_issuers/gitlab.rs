//! GitLab CI/CD: gitlab.com and a self-managed instance, and merge requests from forks,
//! whose `project_*` claims are the fork's while `job_project_*` are the parent's.

use serde_json::{Value, json};

use super::{example, exchange, moved, stamped, with};
use crate::helpers::{FakeIdp, spawn_app_for};

/// A job of `path` (project `id`, group `namespace`) on `ref_name`, run in that project.
fn job(iss: &str, path: &str, id: &str, namespace: (&str, &str), ref_name: &str) -> Value {
    stamped(
        iss,
        json!({
            "sub": format!("project_path:{path}:ref_type:branch:ref:{ref_name}"),
            "namespace_id": namespace.0,
            "namespace_path": namespace.1,
            "project_id": id,
            "project_path": path,
            "job_namespace_id": namespace.0,
            "job_namespace_path": namespace.1,
            "job_project_id": id,
            "job_project_path": path,
            "user_id": "184239",
            "user_login": "dev",
            "user_email": "dev@example.com",
            "user_access_level": "maintainer",
            "pipeline_id": "1519139981",
            "pipeline_source": "push",
            "job_id": "8222997048",
            "ref": ref_name,
            "ref_type": "branch",
            "ref_path": format!("refs/heads/{ref_name}"),
            "ref_protected": "true",
            "environment": "production",
            "environment_protected": "true",
            "deployment_tier": "production",
            "runner_id": 12270835,
            "runner_environment": "gitlab-hosted",
            "sha": "8fe1b322a576d59fe6257052a4107df7dc1b8c78",
            "project_visibility": "private",
            "ci_config_ref_uri": format!("gitlab.com/{path}//.gitlab-ci.yml@refs/heads/{ref_name}"),
            "ci_config_sha": "8fe1b322a576d59fe6257052a4107df7dc1b8c78",
        }),
    )
}

/// The same job as a merge request pipeline from the fork `fork_path` (project `fork_id`),
/// run in the parent project: the code, `sub` and `project_*` are the fork's, the
/// `job_project_*` the parent's.
fn from_fork(parent: &Value, fork_path: &str, fork_id: &str) -> Value {
    let branch = parent["ref"].as_str().unwrap();
    with(
        parent,
        json!({
            "sub": format!("project_path:{fork_path}:ref_type:branch:ref:{branch}"),
            "project_id": fork_id,
            "project_path": fork_path,
            "namespace_id": "990001",
            "namespace_path": fork_path.split('/').next().unwrap(),
            "pipeline_source": "merge_request_event",
            "ref_protected": "false",
        }),
    )
}

#[tokio::test]
async fn gitlab_com_deploys_its_project_and_not_a_fork_merge_request() {
    let idp = FakeIdp::start().await;
    let url = idp.url.clone();
    let text = moved(
        &example("gitlab"),
        "url: https://gitlab.com\n",
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let deploy = "https://deploy.internal.example.com";
    let main = job(&url, "acme/api", "48213377", ("5120034", "acme"), "main");
    let issued = exchange(&app, &app.idp.token_rs256(&main), deploy)
        .await
        .unwrap();
    assert_eq!(issued["sub"], "gitlab:acme/api:production");
    assert_eq!(issued["user_login"], "dev");
    // A fork's merge request, even one that named its branch `main` and whose config path
    // and environment look right: its project_id is the fork's.
    let mut fork = from_fork(&main, "mallory/api", "77000001");
    fork["ref_protected"] = json!("true");
    fork["sub"] = main["sub"].clone();
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&fork), deploy).await,
        Err(400)
    );
    // Someone who registers `acme/api` after a transfer: the path matches, the ids do not.
    let squatter = with(
        &main,
        json!({"project_id": "90000001", "namespace_id": "90000002"}),
    );
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&squatter), deploy).await,
        Err(400)
    );
}

#[tokio::test]
async fn self_managed_gitlab_pins_the_code_and_the_pipeline_to_one_project() {
    let idp = FakeIdp::start().await;
    let url = idp.url.clone();
    let text = moved(
        &example("gitlab-self-managed"),
        "url: https://gitlab.acme.example\n",
        &format!("url: {url}\n"),
    );
    let app = spawn_app_for(idp, &text, |_| {}).await;
    let packages = "https://packages.internal.example.com";
    let tag = |claims: Value| {
        with(
            &claims,
            json!({"ref": "v2.3.0", "ref_type": "tag", "ref_path": "refs/tags/v2.3.0",
                   "sub": "project_path:tools/cli:ref_type:tag:ref:v2.3.0"}),
        )
    };
    let release = tag(job(&url, "tools/cli", "311", ("27", "tools"), "main"));
    let issued = exchange(&app, &app.idp.token_rs256(&release), packages)
        .await
        .unwrap();
    assert_eq!(issued["sub"], "gitlab-acme:tools/cli@v2.3.0");
    // A merge request from a fork, run in tools/cli: job_project_id is right, project_id is
    // the fork's.
    let fork_mr = from_fork(&release, "someone/cli", "4001");
    assert_eq!(fork_mr["job_project_id"], "311");
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&fork_mr), packages).await,
        Err(400)
    );
    // A pipeline in the fork itself: both are the fork's.
    let in_fork = tag(job(
        &url,
        "someone/cli",
        "4001",
        ("990001", "someone"),
        "main",
    ));
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&in_fork), packages).await,
        Err(400)
    );
}
