//! Kubernetes service accounts: the nested `kubernetes.io` claim matched by JSON Pointer, an
//! in-cluster issuer with `jwks_url`, and managed clusters' discovery documents (no
//! authorization endpoint, keys under the issuer's path, AKS's trailing slash).

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{AUDIENCE, example, exchange, explain, moved, stamped, with};
use crate::helpers::{FakeIdp, TestApp, spawn_app_for};

const LEDGER: &str = "https://ledger.internal.example.com";
const WAREHOUSE: &str = "https://warehouse.internal.example.com";
const EKS: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/5C3E0A9F1B2D4E6F8A7B9C0D1E2F3A4B";

/// A projected service-account token of `namespace/name` (uid `uid`) in pod `pod`.
fn service_account(iss: &str, namespace: &str, name: &str, uid: &str, pod: &str) -> Value {
    let now = sts_broker::jose::unix_now();
    with(
        &stamped(
            iss,
            json!({
                "sub": format!("system:serviceaccount:{namespace}:{name}"),
                "kubernetes.io": {
                    "namespace": namespace,
                    "node": {"name": "ip-10-0-3-17.ec2.internal",
                             "uid": "517eb86e-b863-451b-bf70-86cb61439a3a"},
                    "pod": {"name": pod, "uid": "0d8b260e-ef0e-45fb-be8e-ff44f97722e8"},
                    "serviceaccount": {"name": name, "uid": uid},
                    "warnafter": now + 480,
                },
            }),
        ),
        json!({"aud": [AUDIENCE]}),
    )
}

async fn in_cluster() -> TestApp {
    let idp = FakeIdp::start_shaped("", "/openid/v1/jwks").await;
    let url = idp.url.clone();
    let real = "https://kubernetes.default.svc.cluster.local";
    let text = moved(
        &example("kubernetes"),
        &format!("url: {real}\n"),
        &format!("url: {url}\n"),
    );
    let text = moved(
        &text,
        &format!("jwks_url: {real}/openid/v1/jwks\n"),
        &format!("jwks_url: {url}/openid/v1/jwks\n"),
    );
    spawn_app_for(idp, &text, |_| {}).await
}

#[tokio::test]
async fn a_service_account_is_matched_by_its_nested_claims() {
    let app = in_cluster().await;
    let url = app.idp.url.clone();
    let uid = "5a1c2e3f-4b5d-4c6e-8f7a-9b0c1d2e3f4a";
    let deploy = service_account(&url, "payments", "deploy", uid, "deploy-7f9c4-x2kq");
    let issued = exchange(&app, &app.idp.token_rs256(&deploy), LEDGER)
        .await
        .unwrap();
    assert_eq!(issued["sub"], "k8s-prod:payments/deploy");
    assert_eq!(issued["pod"], "deploy-7f9c4-x2kq");
    assert_eq!(
        app.idp.discovery_hits.load(Ordering::SeqCst),
        0,
        "jwks_url, no discovery"
    );

    // Explain shows each key as written, with the value it led to.
    let why = explain(&app, &app.idp.token_rs256(&deploy), LEDGER).await;
    assert_eq!(why["decision"], "allow");
    let checks = super::checks(&why, "k8s-payments-deploy");
    let shown: Vec<(&str, bool, Option<&str>)> = checks
        .iter()
        .map(|(c, p, a)| (c.as_str(), *p, a.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("/kubernetes.io/namespace", true, Some("payments")),
            ("/kubernetes.io/serviceaccount/name", true, Some("deploy")),
            ("/kubernetes.io/serviceaccount/uid", true, Some(uid)),
        ]
    );

    let refused: [(&str, Value); 4] = [
        (
            "deleted and created again: same names, a new uid",
            service_account(
                &url,
                "payments",
                "deploy",
                "ffffffff-0000-4000-8000-000000000000",
                "p",
            ),
        ),
        (
            "the same name in another namespace",
            service_account(&url, "sandbox", "deploy", uid, "p"),
        ),
        (
            "legacy flat claims: the paths lead nowhere",
            stamped(
                &url,
                json!({
                    "sub": "system:serviceaccount:payments:deploy",
                    "kubernetes.io/serviceaccount/namespace": "payments",
                    "kubernetes.io/serviceaccount/service-account.name": "deploy",
                    "kubernetes.io/serviceaccount/service-account.uid": uid,
                }),
            ),
        ),
        (
            "kubernetes.io is not an object",
            with(&deploy, json!({"kubernetes.io": "payments/deploy"})),
        ),
    ];
    for (why, claims) in refused {
        assert_eq!(
            exchange(&app, &app.idp.token_rs256(&claims), LEDGER).await,
            Err(400),
            "{why}"
        );
    }
    let absent = explain(&app, &app.idp.token_rs256(&refused_flat(&url, uid)), LEDGER).await;
    let checks = super::checks(&absent, "k8s-payments-deploy");
    assert!(
        checks
            .iter()
            .all(|(_, passed, actual)| !passed && actual.is_none()),
        "{checks:?}"
    );
}

fn refused_flat(url: &str, uid: &str) -> Value {
    stamped(
        url,
        json!({"sub": "system:serviceaccount:payments:deploy",
               "kubernetes.io/serviceaccount/service-account.uid": uid}),
    )
}

/// A managed cluster's issuer at `path` (EKS's shape, or AKS's with a trailing slash), with
/// the Kubernetes discovery document: no authorization endpoint, no response types.
async fn managed(path: &str, jwks: &str) -> TestApp {
    let idp = FakeIdp::start_shaped(path, jwks).await;
    let url = idp.url.clone();
    let origin = url.strip_suffix(path).unwrap().to_owned();
    idp.set_discovery(json!({
        "issuer": url,
        "jwks_uri": format!("{origin}{jwks}"),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }));
    let text = moved(
        &example("kubernetes-eks"),
        &format!("url: {EKS}\n"),
        &format!("url: {url}\n"),
    );
    spawn_app_for(idp, &text, |_| {}).await
}

#[tokio::test]
async fn a_managed_cluster_issuer_with_a_kubernetes_discovery_document() {
    let id = "/id/5C3E0A9F1B2D4E6F8A7B9C0D1E2F3A4B";
    let app = managed(id, &format!("{id}/keys")).await;
    let uid = "0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a";
    let reports = service_account(&app.idp.url, "analytics", "reports", uid, "reports-0");
    let issued = exchange(&app, &app.idp.token_rs256(&reports), WAREHOUSE)
        .await
        .unwrap();
    assert_eq!(
        issued["sub"],
        "eks-prod:system:serviceaccount:analytics:reports"
    );
    assert_eq!(
        (&issued["namespace"], &issued["pod"]),
        (&json!("analytics"), &json!("reports-0"))
    );
    assert_eq!(app.idp.discovery_hits.load(Ordering::SeqCst), 1);
    let recreated = service_account(&app.idp.url, "analytics", "reports", "new-uid", "reports-0");
    assert_eq!(
        exchange(&app, &app.idp.token_rs256(&recreated), WAREHOUSE).await,
        Err(400)
    );
}

#[tokio::test]
async fn an_issuer_whose_url_ends_in_a_slash() {
    // AKS: `https://<region>.oic.prod-aks.azure.com/<tenant>/<cluster>/`, slash included, in
    // the registered url, the document and every token.
    let path = "/8a7b6c5d-tenant/4f3e2d1c-cluster/";
    let app = managed(path, &format!("{path}openid/v1/jwks")).await;
    assert!(app.idp.url.ends_with('/'));
    let reports = service_account(
        &app.idp.url,
        "analytics",
        "reports",
        "0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a",
        "reports-0",
    );
    assert!(
        exchange(&app, &app.idp.token_rs256(&reports), WAREHOUSE)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_trailing_slash_of_difference_is_refused_and_logged_as_such() {
    // The broker as a process, to read what it logs.
    let idp = FakeIdp::start_shaped("/tenant/cluster/", "/tenant/cluster/jwks").await;
    let without = idp.url.trim_end_matches('/').to_owned();
    idp.set_discovery(json!({"issuer": without, "jwks_uri": format!("{without}/jwks")}));
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::child::start(&idp, dir.path(), "", "", None).await;
    let token = idp.token(&idp.claims());
    let response = reqwest::Client::new()
        .post(format!("{}/token", broker.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::helpers::form(&[
            ("grant_type", crate::helpers::GRANT),
            ("subject_token", &token),
            ("subject_token_type", crate::helpers::ID_TOKEN),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let logged = crate::helpers::eventually(|| broker.log().contains("trailing slash")).await;
    assert!(logged, "{}", broker.log());
}
