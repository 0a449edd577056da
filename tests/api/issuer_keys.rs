//! Issuers' keys through the real server: the cache follows an Issuer's document, a fetch
//! is one flight under one deadline that everyone joins, stale keys never make an exchange
//! wait, `Retry-After` says when a retry can succeed, and a `kid` published twice names no
//! key. Timing is asserted only as generous bounds; the rest is counts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sts_broker::config::{Config, HumanDuration};

use crate::helpers::{FakeIdp, Mode, TestApp, eventually, expect_error, spawn_app, spawn_app_with};

fn timing(cooldown_ms: u64, timeout_ms: u64) -> impl FnOnce(&mut Config) {
    move |c| {
        c.jwks_refetch_cooldown = HumanDuration(Duration::from_millis(cooldown_ms));
        c.upstream_timeout = HumanDuration(Duration::from_millis(timeout_ms));
    }
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    app.exchange(token, None, None).await.status().as_u16()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn put_issuer(app: &TestApp, change: impl FnOnce(&mut Value)) {
    let mut doc: Value = app
        .admin(Method::GET, "/issuers/fake")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    change(&mut doc);
    let response = app
        .admin(Method::PUT, "/issuers/fake")
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn a_changed_jwks_url_takes_effect_at_once() {
    let app = spawn_app().await;
    // Keys fresh for a day: only a cache that follows the document lets go of them.
    app.idp.set_cache_control("max-age=86400");
    let old_key_token = app.idp.token(&app.idp.claims());
    assert_eq!(status_of(&app, &old_key_token).await, 200);

    // The issuer's keys move to another server that does not publish the old ES256 key.
    let moved = FakeIdp::start().await;
    put_issuer(&app, |doc| {
        doc["jwks_url"] = json!(format!("{}/jwks", moved.url))
    })
    .await;

    let body = expect_error(
        app.exchange(&old_key_token, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        body["error_description"].as_str().unwrap().contains("kid"),
        "{body}"
    );
    assert_eq!(
        moved.jwks_hits.load(Ordering::SeqCst),
        1,
        "the new URL was fetched"
    );
    // A token for the issuer signed with a key the new URL publishes is accepted.
    let new_key_token = moved.token(&app.idp.claims());
    assert_eq!(status_of(&app, &new_key_token).await, 200);
    assert_eq!(moved.jwks_hits.load(Ordering::SeqCst), 1);

    // Narrowing the algorithms is another key source too: ES256 tokens are refused at once,
    // and RS256 (whose key both servers publish) still verifies.
    put_issuer(&app, |doc| doc["algorithms"] = json!(["RS256"])).await;
    assert_eq!(status_of(&app, &moved.token(&app.idp.claims())).await, 400);
    assert_eq!(
        status_of(&app, &app.idp.token_rs256(&app.idp.claims())).await,
        200
    );
    assert_eq!(moved.jwks_hits.load(Ordering::SeqCst), 2);

    // Back to discovery and the default algorithms (the first source's, in another order):
    // the same source, whose keys are still cached; nothing of the other server's is kept.
    let before = app.idp.jwks_hits.load(Ordering::SeqCst);
    put_issuer(&app, |doc| {
        doc.as_object_mut().unwrap().remove("jwks_url");
        doc.as_object_mut().unwrap().remove("algorithms");
    })
    .await;
    assert_eq!(status_of(&app, &old_key_token).await, 200);
    assert_eq!(app.idp.jwks_hits.load(Ordering::SeqCst), before);
    assert_eq!(status_of(&app, &new_key_token).await, 400);
}

#[tokio::test]
async fn a_kid_published_twice_names_no_key() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    // Another EC key published under the same kid, before the real one.
    let impostor = FakeIdp::start().await;
    let mut twin = impostor.jwks()["keys"][0].clone();
    twin["kid"] = json!(app.idp.es_kid);
    let mut jwks = app.idp.jwks();
    jwks["keys"].as_array_mut().unwrap().insert(0, twin);
    app.idp.set_jwks(jwks);

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
            .contains("more than once"),
        "{body}"
    );
    // The impostor's signature under that kid is refused the same way.
    let forged = impostor.token_with_header(
        {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            h.kid = Some(app.idp.es_kid.clone());
            h
        },
        &app.idp.claims(),
    );
    expect_error(
        app.exchange(&forged, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    // Other kids still serve.
    assert_eq!(
        status_of(&app, &app.idp.token_rs256(&app.idp.claims())).await,
        200
    );
}

#[tokio::test]
async fn waiters_join_one_fetch_and_one_deadline_bounds_it() {
    let app = spawn_app_with(timing(3000, 1000)).await;
    // The issuer hangs far beyond the deadline.
    app.idp.set_mode(Mode::Delay(Duration::from_secs(60)));
    let token = app.idp.token(&app.idp.claims());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let (client, address, token) = (app.client.clone(), app.address.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let body = crate::helpers::form(&[
                ("grant_type", crate::helpers::GRANT),
                ("subject_token", &token),
                ("subject_token_type", crate::helpers::ID_TOKEN),
            ]);
            client
                .post(format!("{address}/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), 503);
        let seconds = retry_after(&response);
        assert!((1..=3).contains(&seconds), "Retry-After {seconds}");
    }
    assert_eq!(
        app.idp.discovery_hits.load(Ordering::SeqCst),
        1,
        "one flight"
    );
    assert_eq!(app.idp.jwks_hits.load(Ordering::SeqCst), 0);
    // One deadline for all six, not one per waiter in turn (that would be six seconds).
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn discovery_and_jwks_share_one_deadline() {
    let app = spawn_app_with(timing(3000, 1000)).await;
    // Each request alone answers within the deadline; the two together do not.
    app.idp.set_mode(Mode::Delay(Duration::from_millis(600)));
    let token = app.idp.token(&app.idp.claims());
    expect_error(
        app.exchange(&token, None, None).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert_eq!(app.idp.discovery_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stale_keys_answer_at_once_while_a_hung_issuer_is_refreshed_behind() {
    let app = spawn_app_with(timing(2000, 1500)).await;
    // `max-age=1` is raised to the cooldown: fresh for two seconds.
    app.idp.set_cache_control("max-age=1");
    assert_eq!(
        status_of(&app, &app.idp.token(&app.idp.claims())).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    app.idp.set_mode(Mode::Delay(Duration::from_secs(60)));
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            status_of(&app, &app.idp.token(&app.idp.claims())).await,
            200
        );
    }
    // Waiting on the refresh even once would take the 1.5 s deadline.
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    // One refresh ran behind the answers (discovery first, which hangs).
    let discovery = || app.idp.discovery_hits.load(Ordering::SeqCst);
    assert!(eventually(|| discovery() == 2).await);
    assert_eq!(app.idp.jwks_hits.load(Ordering::SeqCst), 1);
    // It fails at its deadline; the stale keys go on serving.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        status_of(&app, &app.idp.token(&app.idp.claims())).await,
        200
    );
}

#[tokio::test]
async fn retry_after_says_when_a_retry_can_succeed() {
    let app = spawn_app_with(timing(2000, 1000)).await;
    app.idp.set_mode(Mode::Status(500));
    let token = app.idp.token(&app.idp.claims());
    let first = app.exchange(&token, None, None).await;
    let wait = retry_after(&first);
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    expect_error(first, 503, "temporarily_unavailable").await;
    // The issuer recovers; within the cooldown nothing is fetched and the answer stays 503.
    app.idp.set_mode(Mode::Normal);
    let fetches = app.idp.fetches();
    let early = app.exchange(&token, None, None).await;
    assert!(retry_after(&early) <= wait);
    expect_error(early, 503, "temporarily_unavailable").await;
    assert_eq!(app.idp.fetches(), fetches);
    // When Retry-After said, the retry succeeds.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(status_of(&app, &token).await, 200);
}
