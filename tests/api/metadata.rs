//! Discovery, JWKS and health endpoints.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn discovery_documents_are_complete_and_cacheable() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["issuer"], app.address.as_str());
        assert_eq!(doc["token_endpoint"], format!("{}/token", app.address));
        for field in [
            "jwks_uri",
            "grant_types_supported",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
            "token_endpoint_auth_methods_supported",
        ] {
            assert!(!doc[field].is_null(), "{path} lacks {field}");
        }
    }
}

#[tokio::test]
async fn jwks_publishes_the_signing_key_under_both_names() {
    let app = spawn_app().await;
    let a: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app.get("/.well-known/jwks").await.json().await.unwrap();
    assert_eq!(a, b);
    let key = &a["keys"][0];
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kty"], "EC");
    assert!(key["kid"].as_str().is_some_and(|k| k.len() == 43));
    assert!(key.get("d").is_none(), "no private part");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let missing = app.get("/nope").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn the_signing_key_survives_a_restart() {
    let app = spawn_app().await;
    let before: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let again = sts_broker::startup::Application::build(app.config.clone(), Default::default())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", again.port());
    tokio::spawn(again.run_until_stopped());
    let after: Value = app
        .client
        .get(format!("{address}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["keys"][0]["kid"], after["keys"][0]["kid"]);
}

#[tokio::test]
async fn metrics_count_exchanges_fetches_and_audit_batches() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    let other = app.idp.token(&app.idp.claims());
    assert_eq!(app.exchange(&other, None, None).await.status(), 200);
    let denied = app.idp.token(
        &app.idp
            .claims_with(serde_json::json!({"sub": "repo:evil/x:ref:refs/heads/main"})),
    );
    assert_eq!(app.exchange(&denied, None, None).await.status(), 400);
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        line(r#"sts_exchanges_total{result="allow",reason="issued",policy="api-deploy"}"#),
        2.0
    );
    assert_eq!(
        line(r#"sts_exchanges_total{result="deny",reason="not_admitted",policy=""}"#),
        1.0
    );
    assert_eq!(line("sts_exchange_duration_seconds_count"), 3.0);
    assert_eq!(
        line(r#"sts_issuer_key_fetches_total{issuer="fake",outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        line(r#"sts_issuer_key_cache_hits_total{issuer="fake"}"#),
        2.0
    );
    assert_eq!(
        line("sts_audit_batch_size_sum"),
        3.0,
        "every record committed"
    );
    assert!(text.trim_end().ends_with("# EOF"));
    assert!(!text.contains(&token), "tokens never appear");
}

/// `/metrics` names every policy: not for anyone who can reach the token endpoint.
#[tokio::test]
async fn metrics_need_a_bearer_on_the_public_listener() {
    const METRICS_TOKEN: &str = "metrics-token-0123456789";
    let app = crate::helpers::spawn_app_with(|c| {
        c.metrics_token = Some(sts_broker::config::Secret::new(METRICS_TOKEN));
    })
    .await;
    let token = app.idp.token(&app.idp.claims());
    assert_eq!(app.exchange(&token, None, None).await.status(), 200);
    let metrics = |bearer: Option<&str>| {
        let mut request = app.client.get(format!("{}/metrics", app.address));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move { request.send().await.unwrap() }
    };
    let anonymous = metrics(None).await;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let text = anonymous.text().await.unwrap();
    assert!(!text.contains("api-deploy"), "{text}");
    assert_eq!(
        metrics(Some("not-the-metrics-token-at-all")).await.status(),
        401
    );
    for bearer in [METRICS_TOKEN, crate::helpers::ADMIN_TOKEN] {
        let allowed = metrics(Some(bearer)).await;
        assert_eq!(allowed.status(), 200);
        assert!(
            allowed
                .text()
                .await
                .unwrap()
                .contains("policy=\"api-deploy\"")
        );
    }
}

/// With `metrics_listen`, `/metrics` is served there only.
#[tokio::test]
async fn metrics_listen_serves_metrics_on_another_address_only() {
    let port = crate::child::free_port();
    let app = crate::helpers::spawn_app_with(|c| {
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    let public = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "not on the public listener, whoever asks"
    );
    let internal = format!("http://127.0.0.1:{port}");
    let scraped = app
        .client
        .get(format!("{internal}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.headers().contains_key("x-request-id"));
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("sts_exchange_duration_seconds")
    );
    // Health checks are answered there too, out of reach of the public listener's cap.
    for path in ["/healthz", "/readyz"] {
        let health = app
            .client
            .get(format!("{internal}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "{path} on the metrics listener");
    }
    for path in ["/token", "/admin/v1/policies", "/.well-known/jwks.json"] {
        let other = app
            .client
            .get(format!("{internal}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "{path} on the metrics listener");
    }
}
