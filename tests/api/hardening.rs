//! Findings of the second attack review, each reproduced against the real server: bounded
//! denial records, owner pins a regex cannot slip past, issued lifetimes within the subject
//! token's, credentials in issuer URLs.

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::{Value, json};

use crate::end_to_end::start_broker_with;
use crate::helpers::{
    FakeIdp, GRANT, ID_TOKEN, POLICIES, TestApp, claims_of, form, spawn_app, spawn_app_full,
};

/// The test policies plus `n` policies of the same issuer that no index key tells apart (so
/// every one is a candidate) and that check long claims.
fn many_policies(n: usize) -> String {
    let mut text = POLICIES.to_owned();
    for i in 0..n {
        write!(
            text,
            "---\nkind: TrustPolicy\nname: bulk-{i:05}\nissuer: fake\n\
             subject: {{glob: \"repo:acme/svc-{i}:**\"}}\n\
             claims:\n  ref: {{glob: \"refs/heads/release-{i}-*\"}}\n  workflow: {{regex: \"deploy-{i}|release\"}}\n\
             grant:\n  audience: [https://bulk.internal]\n"
        )
        .unwrap();
    }
    text
}

/// A valid token of the fake issuer, near the 16 KiB cap, that no policy admits.
fn long_denied_token(idp: &FakeIdp) -> String {
    let token = idp.token(&idp.claims_with(json!({
        "sub": format!("repo:acme/{}", "x".repeat(5000)),
        "ref": format!("refs/heads/{}", "r".repeat(5000)),
    })));
    assert!(
        token.len() > 12 * 1024 && token.len() <= 16 * 1024,
        "{}",
        token.len()
    );
    token
}

/// A request body near the 64 KiB cap: a long audience and many long scopes.
fn long_request(token: &str) -> String {
    let scopes: Vec<String> = (0..400)
        .map(|i| format!("s{i}-{}", "y".repeat(80)))
        .collect();
    let audience = "a".repeat(8000);
    let scope = scopes.join(" ");
    form(&[
        ("grant_type", GRANT),
        ("subject_token", token),
        ("subject_token_type", ID_TOKEN),
        ("audience", &audience),
        ("scope", &scope),
    ])
}

#[tokio::test]
async fn a_denial_record_stays_bounded_whatever_the_policy_set_and_the_token() {
    let app = spawn_app_full(&many_policies(5000), |_| {}).await;
    let body = long_request(&long_denied_token(&app.idp));
    assert!(body.len() < 64 * 1024, "{}", body.len());
    let response = app
        .client
        .post(format!("{}/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let records = app.audit_records(&request_id).await;
    assert_eq!(records.len(), 1);
    let event = &records[0];
    let size = serde_json::to_vec(event).unwrap().len();
    assert!(size <= 16 * 1024, "the record holds {size} bytes");
    // It still says why, for the first candidates, and how many were left out.
    let trace = event["detail"]["trace"].as_array().unwrap();
    assert!(!trace.is_empty() && trace.len() <= 16, "{}", trace.len());
    let omitted = event["detail"]["trace_omitted"].as_u64().unwrap();
    assert!(omitted > 4900, "{omitted}");
    let sub = event["inbound"]["sub"].as_str().unwrap();
    assert!(sub.starts_with("repo:acme/xxx") && sub.contains("…[truncated"));
    // Explain recomputes the complete trace on demand: every policy of the issuer.
    let explained: Value = app
        .admin(Method::POST, "/explain")
        .json(&json!({"subject_token": long_denied_token(&app.idp)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explained["decision"], "deny");
    assert_eq!(explained["policies"].as_array().unwrap().len(), 5002);
}

/// Peak resident memory of a process so far, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn concurrent_denials_keep_the_process_memory_bounded() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (broker, url) = start_broker_with(&idp, dir.path(), &many_policies(5000)).await;
    let client = reqwest::Client::new();
    let deny = |body: String| {
        let request = client
            .post(format!("{url}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Warm up (allocator arenas, caches), then measure what denials add.
    assert_eq!(deny(long_request(&long_denied_token(&idp))).await, 400);
    let before = peak_rss_kib(broker.0.id());
    for _ in 0..4 {
        let wave: Vec<_> = (0..8)
            .map(|_| deny(long_request(&long_denied_token(&idp))))
            .collect();
        for status in futures_util::future::join_all(wave).await {
            assert_eq!(status, 400);
        }
    }
    let after = peak_rss_kib(broker.0.id());
    eprintln!("peak resident memory: {before} KiB before 32 denials, {after} KiB after");
    // Before the records were bounded, 8 concurrent denials like these took it from 45 MB
    // to 757 MB; now they add no more than a few requests' worth of buffers.
    assert!(
        after < before + 64 * 1024,
        "peak resident memory grew from {before} KiB to {after} KiB"
    );
}

/// A broker whose fake issuer is shared (anyone can get a token from it).
async fn shared_issuer_app() -> TestApp {
    let policies = POLICIES.replace(
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, RS256]\nshared: true",
    );
    spawn_app_full(&policies, |_| {}).await
}

#[tokio::test]
async fn a_regex_with_a_quantified_separator_does_not_pin_the_owner() {
    let app = shared_issuer_app().await;
    for pattern in ["repo:acme/+*.*", "repo:acme/+{0}.*", "repo:acme/{0,}.*"] {
        let response = app
            .admin(Method::PUT, "/policies/owner-bypass")
            .json(&json!({
                "issuer": "fake",
                "subject": {"regex": pattern},
                "grant": {"audience": ["https://deploy.internal"]},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{pattern} was accepted");
        let body: Value = response.json().await.unwrap();
        assert!(body.to_string().contains("pin"), "{pattern}: {body}");
    }
    // The owner of the would-be bypass stays out.
    let evil = app.idp.token(&app.idp.claims_with(json!({
        "sub": "repo:acme-evil/x:ref:refs/heads/main",
        "repository_id": "9",
    })));
    crate::helpers::expect_error(
        app.exchange(&evil, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    // A pinned regex is still accepted.
    let pinned = app
        .admin(Method::PUT, "/policies/owner-pinned")
        .json(&json!({
            "issuer": "fake",
            "subject": {"regex": "repo:acme/(api|web):.*"},
            "grant": {"audience": ["https://deploy.internal"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), 201);
}

#[tokio::test]
async fn an_issued_token_never_outlives_the_subject_token() {
    let app = spawn_app().await;
    let now = sts_broker::jose::unix_now();
    // The policy grants 10 minutes; the subject token has 30 s left.
    let short = app.idp.token(
        &app.idp
            .claims_with(json!({"exp": now + 30, "iat": now - 60})),
    );
    let issued: Value = app
        .exchange(&short, Some("https://deploy.internal"), None)
        .await
        .json()
        .await
        .unwrap();
    let claims = claims_of(issued["access_token"].as_str().unwrap());
    assert_eq!(claims["exp"], now + 30, "{claims}");
    assert!(issued["expires_in"].as_i64().unwrap() <= 30, "{issued}");
    // Expired 10 s ago: inside the 60 s leeway, but an issued token would be born expired.
    let expired = app.idp.token(
        &app.idp
            .claims_with(json!({"exp": now - 10, "iat": now - 120})),
    );
    crate::helpers::expect_error(
        app.exchange(&expired, Some("https://deploy.internal"), None)
            .await,
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn issuer_urls_with_userinfo_are_refused() {
    let app = spawn_app().await;
    for url in [
        "https://:pw@idp.example",
        "https://user@idp.example",
        "https://:@idp.example",
    ] {
        for field in ["url", "jwks_url"] {
            let mut doc = json!({
                "url": "https://idp.example",
                "audiences": ["sts"],
                "algorithms": ["ES256"],
            });
            doc[field] = url.into();
            let response = app
                .admin(Method::PUT, "/issuers/with-userinfo")
                .json(&doc)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{field} = {url} was accepted");
        }
    }
}
