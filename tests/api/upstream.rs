//! Issuer and key-fetching attacks, key rotation, stale keys, replay and rate limits, each
//! against the running server with a fake issuer that counts what it serves.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use sts_broker::config::{HumanDuration, TrustedProxies};

use crate::helpers::{
    FakeIdp, Mode, POLICIES, eventually, expect_error, spawn_app, spawn_app_full, spawn_app_with,
};

/// A one-second cooldown, with the shorter upstream deadline a valid configuration needs.
fn fast_cooldown(c: &mut sts_broker::config::Config) {
    c.jwks_refetch_cooldown = HumanDuration(Duration::from_secs(1));
    c.upstream_timeout = HumanDuration(Duration::from_millis(800));
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let app = spawn_app().await;
    app.idp.set_discovery(
        json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/jwks", app.idp.url)}),
    );
    let token = app.idp.token(&app.idp.claims());
    expect_error(
        app.exchange(&token, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(
        app.idp.jwks_hits.load(Ordering::SeqCst),
        0,
        "the JWKS it names is not fetched"
    );
}

#[tokio::test]
async fn a_jwks_uri_on_another_host_is_not_fetched() {
    let app = spawn_app().await;
    let other = FakeIdp::start().await;
    app.idp
        .set_discovery(json!({"issuer": app.idp.url, "jwks_uri": format!("{}/jwks", other.url)}));
    let token = app.idp.token(&app.idp.claims());
    expect_error(
        app.exchange(&token, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(other.fetches(), 0);
}

#[tokio::test]
async fn a_configured_jwks_url_is_used_without_discovery() {
    let keys = FakeIdp::start().await;
    let policies = POLICIES.replace(
        "algorithms: [ES256, RS256]",
        &format!("algorithms: [ES256, RS256]\njwks_url: {}/jwks", keys.url),
    );
    let app = spawn_app_full(&policies, |_| {}).await;
    // The keys server publishes the issuer's keys.
    keys.set_jwks(app.idp.jwks());
    let token = app.idp.token(&app.idp.claims());
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    assert_eq!(app.idp.fetches(), 0, "no discovery");
    assert_eq!(keys.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let app = spawn_app().await;
    let other = FakeIdp::start().await;
    app.idp.set_mode(Mode::Redirect(format!(
        "{}/.well-known/openid-configuration",
        other.url
    )));
    let token = app.idp.token(&app.idp.claims());
    expect_error(
        app.exchange(&token, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(other.fetches(), 0);
}

#[tokio::test]
async fn oversized_garbage_and_empty_key_sets_are_refused_and_never_cached() {
    let app = spawn_app_with(fast_cooldown).await;
    let token = app.idp.token(&app.idp.claims());
    let good = app.idp.jwks();
    let mut huge = good.clone();
    huge["padding"] = json!("x".repeat(300 * 1024));
    for bad in [
        huge,
        json!({"keys": []}),
        json!({"keys": "nope"}),
        json!([1, 2]),
    ] {
        app.idp.set_jwks(bad);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        expect_error(
            app.exchange(&token, None, None).await,
            503,
            "temporarily_unavailable",
        )
        .await;
    }
    app.idp.set_mode(Mode::Garbage);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_error(
        app.exchange(&token, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    // Within the cooldown a failed fetch is not retried.
    let before = app.idp.fetches();
    expect_error(
        app.exchange(&token, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(app.idp.fetches(), before);
    app.idp.set_mode(Mode::Normal);
    app.idp.set_jwks(good);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
}

#[tokio::test]
async fn last_good_keys_keep_serving_while_the_issuer_is_down() {
    let app = spawn_app_with(fast_cooldown).await;
    app.idp.set_cache_control("max-age=1");
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200
    );
    app.idp.set_mode(Mode::Status(500));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200
    );
    // The refresh runs behind the answer (stale-while-revalidate).
    let hits =
        || app.idp.jwks_hits.load(Ordering::SeqCst) + app.idp.discovery_hits.load(Ordering::SeqCst);
    assert!(eventually(|| hits() >= 3).await, "a refresh was tried");
}

#[tokio::test]
async fn max_age_is_honoured_within_bounds() {
    let app = spawn_app_with(fast_cooldown).await;
    app.idp.set_cache_control("public, max-age=1");
    let token = app.idp.token(&app.idp.claims());
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    assert_eq!(app.idp.jwks_hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    // Stale keys answered; the refresh runs behind the answer.
    let jwks_hits = || app.idp.jwks_hits.load(Ordering::SeqCst);
    assert!(
        eventually(|| jwks_hits() == 2).await,
        "refreshed after max-age"
    );
    // max-age=0 is raised to the cooldown, not obeyed as "fetch every time".
    app.idp.set_cache_control("max-age=0");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        assert_eq!(
            app.exchange(&app.idp.token(&app.idp.claims()), None, None)
                .await
                .status(),
            200
        );
    }
    assert!(eventually(|| jwks_hits() == 3).await);
    // Once refreshed, fresh for the cooldown: no further fetch.
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200
    );
    assert_eq!(jwks_hits(), 3);
}

#[tokio::test]
async fn an_issuer_key_rotation_costs_exactly_one_refetch() {
    let app = spawn_app_with(fast_cooldown).await;
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.idp.rotate();
    let jwks_before = app.idp.jwks_hits.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(
            app.exchange(&app.idp.token(&app.idp.claims()), None, None)
                .await
                .status(),
            200
        );
    }
    assert_eq!(app.idp.jwks_hits.load(Ordering::SeqCst), jwks_before + 1);
}

#[tokio::test]
async fn a_cold_cache_hit_by_a_thousand_requests_fetches_once() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    let requests = (0..1000).map(|_| app.exchange(&token, None, None));
    let responses = futures_util::future::join_all(requests).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(app.idp.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(app.idp.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn key_hints_in_the_header_are_never_used() {
    let app = spawn_app().await;
    let attacker = FakeIdp::start().await;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(attacker.es_kid.clone());
    header.jku = Some(format!("{}/jwks", attacker.url));
    header.x5u = Some(format!("{}/jwks", attacker.url));
    // Claims for our issuer, signed by the attacker's key that the header points to.
    let forged = attacker.token_with_header(header, &app.idp.claims());
    expect_error(
        app.exchange(&forged, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(attacker.fetches(), 0);
    // A genuine token carrying hints is judged by the registered keys alone.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(app.idp.es_kid.clone());
    header.jku = Some(format!("{}/jwks", attacker.url));
    let genuine = app.idp.token_with_header(header, &app.idp.claims());
    assert_eq!(app.exchange(&genuine, None, None).await.status(), 200);
    assert_eq!(attacker.fetches(), 0);
}

#[tokio::test]
async fn kid_and_key_type_rules() {
    let app = spawn_app().await;
    let claims = app.idp.claims();
    let no_kid = app
        .idp
        .token_with_header(Header::new(Algorithm::ES256), &claims);
    let body = expect_error(
        app.exchange(&no_kid, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("several keys"),
        "{body}"
    );
    let mut junk = Header::new(Algorithm::ES256);
    junk.kid = Some("k".repeat(10 * 1024));
    expect_error(
        app.exchange(&app.idp.token_with_header(junk, &claims), None, None)
            .await,
        400,
        "invalid_request",
    )
    .await;
    let mut nested = Header::new(Algorithm::ES256);
    nested.kid = Some(app.idp.es_kid.clone());
    nested.cty = Some("JWT".into());
    expect_error(
        app.exchange(&app.idp.token_with_header(nested, &claims), None, None)
            .await,
        400,
        "invalid_request",
    )
    .await;
    // RS256 claimed, but the kid names the EC key: no key of that type, no verification.
    let token = app.idp.token(&claims);
    let parts: Vec<&str> = token.split('.').collect();
    let header = json!({"alg": "RS256", "kid": app.idp.es_kid});
    let swapped = format!(
        "{}.{}.{}",
        sts_broker::jose::b64url(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    expect_error(
        app.exchange(&swapped, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    for alg in ["HS256", "HS384", "HS512", "none", "ES512", "RSA-OAEP"] {
        let header = json!({"alg": alg, "kid": app.idp.rsa_kid});
        let forged = format!(
            "{}.{}.{}",
            sts_broker::jose::b64url(header.to_string().as_bytes()),
            parts[1],
            parts[2]
        );
        expect_error(
            app.exchange(&forged, None, None).await,
            400,
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test]
async fn a_jwk_whose_own_alg_or_use_disagrees_is_not_a_key() {
    for (field, value) in [("alg", "ES384"), ("use", "enc")] {
        let app = spawn_app().await;
        let mut jwks = app.idp.jwks();
        jwks["keys"][0][field] = json!(value);
        app.idp.set_jwks(jwks);
        let token = app.idp.token(&app.idp.claims());
        expect_error(
            app.exchange(&token, None, None).await,
            400,
            "invalid_request",
        )
        .await;
        // The RSA key is unaffected.
        assert_eq!(
            app.exchange(&app.idp.token_rs256(&app.idp.claims()), None, None)
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn replay_protection_allows_each_jti_once_across_restarts() {
    let policies = POLICIES.replace(
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, RS256]\nreplay_protection: true",
    );
    let app = spawn_app_full(&policies, |_| {}).await;
    let token = app.idp.token(&app.idp.claims());
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    let body = expect_error(
        app.exchange(&token, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already exchanged")
    );
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200,
        "another jti"
    );
    let no_jti = app.idp.token(&app.idp.claims_with(json!({"jti": null})));
    expect_error(
        app.exchange(&no_jti, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    // A second broker on the same database remembers.
    let other = app.restart().await;
    let form = crate::helpers::form(&[
        ("grant_type", crate::helpers::GRANT),
        ("subject_token", &token),
        ("subject_token_type", crate::helpers::ID_TOKEN),
    ]);
    let again = app
        .client
        .post(format!("{other}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    expect_error(again, 400, "invalid_request").await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_do_not_starve_others() {
    let app = spawn_app_with(|c| c.rate_limit_per_subject = "2/m".parse().unwrap()).await;
    for _ in 0..2 {
        assert_eq!(
            app.exchange(&app.idp.token(&app.idp.claims()), None, None)
                .await
                .status(),
            200
        );
    }
    let limited = app
        .exchange(&app.idp.token(&app.idp.claims()), None, None)
        .await;
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    expect_error(limited, 429, "slow_down").await;
    let other = app
        .idp
        .claims_with(json!({"sub": "repo:acme/web:ref:refs/heads/main"}));
    assert_eq!(
        app.exchange(&app.idp.token(&other), Some("https://logs.internal"), None)
            .await
            .status(),
        200
    );

    let app = spawn_app_with(|c| c.rate_limit_per_client = "3/m".parse().unwrap()).await;
    for _ in 0..3 {
        assert_eq!(app.exchange("garbage", None, None).await.status(), 400);
    }
    let limited = app
        .exchange(&app.idp.token(&app.idp.claims()), None, None)
        .await;
    assert!(limited.headers().contains_key("retry-after"));
    expect_error(limited, 429, "slow_down").await;
    let octo = app
        .client
        .get(format!("{}/sts/exchange?scope=x", app.address))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(octo.status(), 429);
    let body: Value = octo.json().await.unwrap();
    assert_eq!(body["error"], "slow_down");
}

#[tokio::test]
async fn a_shared_issuer_policy_without_an_owner_pin_is_refused() {
    let policies = POLICIES
        .replace(
            "algorithms: [ES256, RS256]",
            "algorithms: [ES256, RS256]\nshared: true",
        )
        .replace(
            "subject: {glob: \"repo:acme/*:ref:refs/heads/*\"}",
            "subject: {glob: \"repo:*/api:ref:refs/heads/*\"}",
        );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policies");
    std::fs::create_dir(&p).unwrap();
    std::fs::write(
        p.join("p.yaml"),
        policies.replace("{IDP}", "http://127.0.0.1:9"),
    )
    .unwrap();
    let err = sts_broker::startup::Application::build(
        crate::helpers::test_config(&dir.path().join("db"), &p),
        Default::default(),
    )
    .await
    .err()
    .expect("refused");
    let text = format!("{err:#}");
    // `branches-read`'s subject line.
    let line = policies
        .lines()
        .position(|l| l.contains("repo:*/api"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("p.yaml:{line}: subject:")) && text.contains("pin"),
        "{text}"
    );
}

/// Behind a trusted proxy the client is the address it forwards: the per-client limit and
/// the audit record key on it. From anyone else `X-Forwarded-For` changes nothing.
#[tokio::test]
async fn forwarded_clients_are_believed_only_from_trusted_proxies() {
    async fn exchange_as(app: &crate::helpers::TestApp, forwarded: &str) -> (u16, String) {
        let token = app.idp.token(&app.idp.claims());
        let body = crate::helpers::form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ]);
        let response = app
            .client
            .post(format!("{}/token", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", forwarded)
            .body(body)
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.status().as_u16(), id)
    }
    async fn client_addr(app: &crate::helpers::TestApp, id: &str) -> Option<String> {
        app.audit_records(id).await[0]["client_addr"]
            .as_str()
            .map(str::to_owned)
    }

    let app = spawn_app_with(|c| {
        c.rate_limit_per_client = "2/m".parse().unwrap();
        c.trusted_proxies = TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    })
    .await;
    let (status, id) = exchange_as(&app, "198.51.100.7, 127.0.0.2").await;
    assert_eq!(status, 200);
    assert_eq!(
        client_addr(&app, &id).await.as_deref(),
        Some("198.51.100.7")
    );
    assert_eq!(exchange_as(&app, "198.51.100.7").await.0, 200);
    assert_eq!(
        exchange_as(&app, "198.51.100.7").await.0,
        429,
        "limited per client"
    );
    assert_eq!(
        exchange_as(&app, "198.51.100.8").await.0,
        200,
        "another client"
    );

    let app = spawn_app_with(|c| c.rate_limit_per_client = "2/m".parse().unwrap()).await;
    let (status, id) = exchange_as(&app, "198.51.100.7").await;
    assert_eq!(status, 200);
    assert_eq!(client_addr(&app, &id).await.as_deref(), Some("127.0.0.1"));
    assert_eq!(exchange_as(&app, "198.51.100.8").await.0, 200);
    assert_eq!(
        exchange_as(&app, "198.51.100.9").await.0,
        429,
        "a spoofed header does not escape the limit"
    );
}
