//! Every major CI issuer, through the real server: the example Issuer and TrustPolicy of
//! `policies/examples/` with the issuer's URL moved to a fake that serves discovery and keys
//! in the provider's shape and mints tokens with the provider's claim set.

mod claim_paths;
mod github;
mod gitlab;
mod kubernetes;
mod lint;
mod others;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, claims_of};

/// The `aud` every example Issuer accepts.
pub const AUDIENCE: &str = "https://sts.example.com";

/// The text of `policies/examples/NAME.yaml`.
pub fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/examples")
        .join(format!("{name}.yaml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with every `from` replaced by `to`, which must occur.
pub fn moved(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the example");
    text.replace(from, to)
}

/// `claims` with an issuer, the examples' audience and fresh times and `jti`.
pub fn stamped(iss: &str, claims: Value) -> Value {
    let now = sts_broker::jose::unix_now();
    let mut all = json!({
        "iss": iss,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    all.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    all
}

/// `base` with some members replaced (`null` removes one).
pub fn with(base: &Value, changes: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            out.as_object_mut().unwrap().remove(k);
        } else {
            out[k] = v.clone();
        }
    }
    out
}

/// Exchanges `token` for `audience`: the issued token's claims, or the status of a refusal.
pub async fn exchange(app: &TestApp, token: &str, audience: &str) -> Result<Value, u16> {
    let response = app.exchange(token, Some(audience), None).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    match status {
        200 => Ok(claims_of(body["access_token"].as_str().unwrap())),
        _ => Err(status),
    }
}

/// The admin explanation of exchanging `token` for `audience`.
pub async fn explain(app: &TestApp, token: &str, audience: &str) -> Value {
    let response = app
        .admin(Method::POST, "/explain")
        .json(&json!({"subject_token": token, "audience": audience}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// One policy's checks in an explanation, as (check, passed, actual).
pub fn checks(explanation: &Value, policy: &str) -> Vec<(String, bool, Option<String>)> {
    let traced = explanation["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == policy)
        .unwrap_or_else(|| panic!("{policy} is not in {explanation}"));
    traced["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["passed"].as_bool().unwrap(),
                c["actual"].as_str().map(str::to_owned),
            )
        })
        .collect()
}
