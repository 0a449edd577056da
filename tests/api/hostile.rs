//! Bad input of every kind: a clear RFC 6749 error, never a panic or a 500, and the server
//! keeps serving.

use serde_json::{Value, json};
use sts_broker::jose::b64url;

use crate::helpers::{GRANT, ID_TOKEN, expect_error, form, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_requests_get_rfc6749_errors() {
    let app = spawn_app().await;
    let token = app.idp.token(&app.idp.claims());
    let t = token.as_str();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no grant_type",
            vec![("subject_token", t), ("subject_token_type", ID_TOKEN)],
            "invalid_request",
        ),
        (
            "other grant",
            vec![
                ("grant_type", "client_credentials"),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
            ],
            "unsupported_grant_type",
        ),
        (
            "no subject_token",
            vec![("grant_type", GRANT), ("subject_token_type", ID_TOKEN)],
            "invalid_request",
        ),
        (
            "no subject_token_type",
            vec![("grant_type", GRANT), ("subject_token", t)],
            "invalid_request",
        ),
        (
            "saml type",
            vec![
                ("grant_type", GRANT),
                ("subject_token", t),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
            "invalid_request",
        ),
        (
            "refresh requested",
            vec![
                ("grant_type", GRANT),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ],
            "invalid_request",
        ),
        (
            "repeated parameter",
            vec![
                ("grant_type", GRANT),
                ("subject_token", t),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
            ],
            "invalid_request",
        ),
        (
            "actor token",
            vec![
                ("grant_type", GRANT),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("actor_token", t),
                ("actor_token_type", ID_TOKEN),
            ],
            "invalid_request",
        ),
        (
            "bad scope characters",
            vec![
                ("grant_type", GRANT),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("scope", "a\"b"),
            ],
            "invalid_scope",
        ),
    ];
    for (name, params, error) in cases {
        let body = expect_error(app.post_token(&params).await, 400, error).await;
        assert!(body.get("access_token").is_none(), "{name}");
    }
    // Unknown extra parameters are ignored; empty ones count as omitted.
    let ok = app
        .post_token(&[
            ("grant_type", GRANT),
            ("subject_token", t),
            ("subject_token_type", ID_TOKEN),
            ("client_id", "generic"),
            ("scope", ""),
        ])
        .await;
    assert_eq!(ok.status(), 200);
    // The jwt token type is accepted both ways.
    let jwt = "urn:ietf:params:oauth:token-type:jwt";
    let ok: Value = app
        .post_token(&[
            ("grant_type", GRANT),
            ("subject_token", t),
            ("subject_token_type", jwt),
            ("requested_token_type", jwt),
        ])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["issued_token_type"], jwt);
}

#[tokio::test]
async fn wrong_content_type_method_and_size() {
    let app = spawn_app().await;
    let json_body = app
        .client
        .post(format!("{}/token", app.address))
        .json(&json!({"grant_type": GRANT}))
        .send()
        .await
        .unwrap();
    expect_error(json_body, 400, "invalid_request").await;
    let get = app.get("/token").await;
    expect_error(get, 405, "invalid_request").await;
    let huge = "a".repeat(1024 * 1024);
    let response = app
        .post_token(&[("grant_type", GRANT), ("subject_token", &huge)])
        .await;
    expect_error(response, 413, "invalid_request").await;
    // A 17 KiB token inside a small body: refused as too large, before any decoding.
    let big_token = "a".repeat(17 * 1024);
    let body = expect_error(
        app.exchange(&big_token, None, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("16 KiB")
    );
    let raw = app
        .client
        .post(format!("{}/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x00, b'&', b'%', b'z'])
        .send()
        .await
        .unwrap();
    expect_error(raw, 400, "invalid_request").await;
    assert_eq!(app.get("/healthz").await.status(), 200);
}

fn forge(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(signature)
    )
}

#[tokio::test]
async fn forged_and_invalid_subject_tokens_are_refused() {
    let app = spawn_app().await;
    let idp = &app.idp;
    let claims = idp.claims();
    let genuine = idp.token(&claims);
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered_claims = idp.claims_with(json!({"sub": "repo:acme/api:ref:refs/heads/evil"}));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    let hmac_with_public_key = {
        use aws_lc_rs::hmac;
        let header = json!({"alg": "HS256", "kid": idp.rsa_kid});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &idp.rsa_public_n);
        format!(
            "{input}.{}",
            b64url(hmac::sign(&key, input.as_bytes()).as_ref())
        )
    };
    let rows: Vec<(&str, String)> = vec![
        ("garbage", "not.a.token".into()),
        ("two parts", "abc.def".into()),
        ("JWE", "a.b.c.d.e".into()),
        ("alg none", forge(json!({"alg": "none"}), &claims, b"")),
        ("HS256 keyed with the public key", hmac_with_public_key),
        ("tampered payload", tampered),
        (
            "signature of another token",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                idp.token(&idp.claims()).split('.').nth(2).unwrap()
            ),
        ),
        (
            "expired",
            idp.token(&idp.claims_with(json!({"exp": 1000, "iat": 900}))),
        ),
        (
            "exp as a string",
            idp.token(&idp.claims_with(json!({"exp": "never"}))),
        ),
        ("no exp", idp.token(&idp.claims_with(json!({"exp": null})))),
        (
            "wrong aud",
            idp.token(&idp.claims_with(json!({"aud": "someone-else"}))),
        ),
        (
            "aud empty array",
            idp.token(&idp.claims_with(json!({"aud": []}))),
        ),
        (
            "crit header",
            forge(
                json!({"alg": "ES256", "kid": idp.es_kid, "crit": ["x"], "x": 1}),
                &claims,
                b"sig",
            ),
        ),
        (
            "duplicate header key",
            format!(
                "{}.{}.{}",
                b64url(br#"{"alg":"ES256","alg":"none"}"#),
                parts[1],
                parts[2]
            ),
        ),
        (
            "kid full of SQL",
            forge(
                json!({"alg": "ES256", "kid": "' OR 1=1; DROP TABLE audit_events; --"}),
                &claims,
                b"sig",
            ),
        ),
        (
            "kid path traversal",
            forge(
                json!({"alg": "ES256", "kid": "../../etc/passwd"}),
                &claims,
                b"sig",
            ),
        ),
    ];
    for (name, token) in rows {
        let response = app
            .exchange(&token, Some("https://deploy.internal"), None)
            .await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{name}: {body}");
    }
    // The genuine token still works: nothing above broke the server or its key cache.
    assert_eq!(app.exchange(&genuine, None, None).await.status(), 200);
}

#[tokio::test]
async fn unregistered_issuers_are_never_fetched() {
    let app = spawn_app().await;
    let other = crate::helpers::FakeIdp::start().await;
    let token = other.token(&other.claims());
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
            .contains("not registered")
    );
    assert_eq!(other.fetches(), 0);
    assert_eq!(app.idp.fetches(), 0);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_cooldown() {
    let app = spawn_app_with(|c| {
        c.jwks_refetch_cooldown =
            sts_broker::config::HumanDuration(std::time::Duration::from_secs(1));
        c.upstream_timeout =
            sts_broker::config::HumanDuration(std::time::Duration::from_millis(800));
    })
    .await;
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200
    );
    let first = app.idp.fetches();
    // Past the cooldown of the first fetch, twenty random kids cause one refetch.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for i in 0..20 {
        let token = forge(
            json!({"alg": "ES256", "kid": format!("random-{i}")}),
            &app.idp.claims(),
            &[0u8; 64],
        );
        expect_error(
            app.exchange(&token, None, None).await,
            400,
            "invalid_request",
        )
        .await;
    }
    assert_eq!(
        app.idp.fetches(),
        first + 2,
        "one refetch (discovery + JWKS) for twenty unknown kids"
    );
    // The good keys were not evicted by the misses.
    assert_eq!(
        app.exchange(&app.idp.token(&app.idp.claims()), None, None)
            .await
            .status(),
        200
    );
    assert_eq!(app.idp.fetches(), first + 2);
}

#[tokio::test]
async fn an_unreachable_issuer_is_temporarily_unavailable() {
    let app = spawn_app_with(|c| {
        c.upstream_timeout = sts_broker::config::HumanDuration(std::time::Duration::from_secs(2))
    })
    .await;
    // Rewrite the policy set to point the issuer at a closed port: a fresh app on it.
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.yaml"),
        crate::helpers::POLICIES.replace("{IDP}", "http://127.0.0.1:9"),
    )
    .unwrap();
    let config = crate::helpers::test_config(&dir.path().join("db"), &policies);
    let down = sts_broker::startup::Application::build(config, Default::default())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", down.port());
    tokio::spawn(down.run_until_stopped());
    let claims = app.idp.claims_with(json!({"iss": "http://127.0.0.1:9"}));
    let body = form(&[
        ("grant_type", GRANT),
        ("subject_token", &app.idp.token(&claims)),
        ("subject_token_type", ID_TOKEN),
    ]);
    let response = app
        .client
        .post(format!("{address}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    expect_error(response, 503, "temporarily_unavailable").await;
}

#[tokio::test]
async fn a_form_with_thousands_of_parameters_is_refused_cheaply() {
    let app = spawn_app().await;
    let many: String = (0..5000).map(|i| format!("p{i}=1&")).collect();
    let response = app
        .client
        .post(format!("{}/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(many)
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "invalid_request").await;
}
