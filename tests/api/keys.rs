//! The broker as an OIDC provider: signing algorithms, keys sealed at rest, rotation without
//! failed verifications, introspection and revocation.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{Value, json};
use sts_broker::config::{HumanDuration, Secret, SigningAlgorithm};
use sts_broker::startup::{Application, Options};

use crate::helpers::{TestApp, form, spawn_app, spawn_app_with};

/// Adds a policy granting `audience` with `scopes` (tried first by name) and returns a broker
/// token issued under it.
async fn broker_token(app: &TestApp, policy: &str, audience: &str, scopes: &[&str]) -> String {
    let doc = json!({
        "issuer": "fake",
        "subject": "repo:acme/api:ref:refs/heads/main",
        "claims": {"repository_owner_id": "2001"},
        "grant": {"audience": [audience], "scopes": scopes},
    });
    let put = app
        .admin(Method::PUT, &format!("/policies/{policy}"))
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    let subject = app.idp.token(&app.idp.claims());
    let response = app.exchange(&subject, Some(audience), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// An ordinary exchange under the `api-deploy` test policy.
async fn deploy_token(app: &TestApp) -> String {
    let subject = app.idp.token(&app.idp.claims());
    let body: Value = app
        .exchange(&subject, Some("https://deploy.internal"), None)
        .await
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Verifies `token` the way a relying party does: discovery, JWKS, jsonwebtoken.
fn verify_independently(
    jwks: &JwkSet,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn fetch_jwks(app: &TestApp) -> (JwkSet, Duration) {
    let response = app.get("/.well-known/jwks.json").await;
    let max_age = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .split("max-age=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .expect("max-age");
    (response.json().await.unwrap(), Duration::from_secs(max_age))
}

#[tokio::test]
async fn every_signing_algorithm_verifies_independently() {
    for (alg, expected, kty) in [
        (SigningAlgorithm::ES256, Algorithm::ES256, "EC"),
        (SigningAlgorithm::RS256, Algorithm::RS256, "RSA"),
        (SigningAlgorithm::EdDSA, Algorithm::EdDSA, "OKP"),
    ] {
        let app = spawn_app_with(|c| c.signing_algorithm = alg).await;
        let (jwks, _) = fetch_jwks(&app).await;
        assert_eq!(
            jwks.keys.len(),
            2,
            "{alg:?}: the active key and the next one"
        );
        let raw: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        for key in raw["keys"].as_array().unwrap() {
            assert_eq!(key["kty"], kty, "{alg:?}");
            assert_eq!(key["alg"], alg.as_str(), "{alg:?}");
            assert_eq!(key["use"], "sig", "{alg:?}");
            assert!(key["kid"].is_string(), "{alg:?}");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(key.get(private).is_none(), "{alg:?} publishes {private}");
            }
            if kty == "RSA" {
                let n = key["n"].as_str().unwrap();
                assert!(n.len() >= 342, "RSA modulus of at least 2048 bits");
            }
        }
        let token = deploy_token(&app).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, expected);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let claims = verify_independently(&jwks, &token, &app.address, "https://deploy.internal")
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(claims["client_id"], "api-deploy");
        let discovery: Value = app
            .get("/.well-known/openid-configuration")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            discovery["id_token_signing_alg_values_supported"],
            json!([alg.as_str()])
        );
    }
}

#[tokio::test]
async fn jwks_and_discovery_revalidate_with_etags() {
    let app = spawn_app_with(|c| c.jwks_max_age = HumanDuration(Duration::from_secs(120))).await;
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let first = app.get(path).await;
        assert_eq!(first.headers()["cache-control"], "public, max-age=120");
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong: {etag}"
        );
        let again = app
            .client
            .get(format!("{}{path}", app.address))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        let other = app
            .client
            .get(format!("{}{path}", app.address))
            .header("if-none-match", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn discovery_is_valid_oidc_and_rfc8414_metadata() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    // OpenID Connect Discovery 1.0 §3 REQUIRED members, and RFC 8414 §2's.
    for field in [
        "issuer",
        "authorization_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "token_endpoint",
        "introspection_endpoint",
        "grant_types_supported",
    ] {
        assert!(!doc[field].is_null(), "missing {field}");
    }
    let base = app.address.as_str();
    for endpoint in [
        "authorization_endpoint",
        "jwks_uri",
        "token_endpoint",
        "introspection_endpoint",
    ] {
        assert!(
            doc[endpoint].as_str().unwrap().starts_with(base),
            "{endpoint}"
        );
    }
    // The authorization endpoint exists and refuses in RFC 6749 terms.
    let authorize = app.get("/authorize?response_type=code&client_id=x").await;
    crate::helpers::expect_error(authorize, 400, "unsupported_response_type").await;
    let same: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc, same);
}

/// Exchanges and verifications run without pause across two rotations; a verifier caches the
/// JWKS exactly as long as `Cache-Control: max-age` allows, and not one verification fails.
#[tokio::test]
async fn rotation_fails_no_verification() {
    let app = spawn_app_with(|c| {
        c.jwks_max_age = HumanDuration(Duration::from_secs(1));
        c.key_rotation_period = HumanDuration(Duration::from_secs(2));
    })
    .await;
    let (mut jwks, mut max_age) = fetch_jwks(&app).await;
    let mut fetched_at = Instant::now();
    let mut signing_kids = Vec::new();
    let (mut exchanges, mut failures) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if fetched_at.elapsed() >= max_age {
            (jwks, max_age) = fetch_jwks(&app).await;
            fetched_at = Instant::now();
        }
        let token = deploy_token(&app).await;
        exchanges += 1;
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        if signing_kids.last() != Some(&kid) {
            signing_kids.push(kid);
        }
        if let Err(e) = verify_independently(&jwks, &token, &app.address, "https://deploy.internal")
        {
            failures.push(e);
        }
        if signing_kids.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        signing_kids.len() >= 3,
        "two rotations within 20 s (saw {signing_kids:?})"
    );
    assert_eq!(
        signing_kids.iter().collect::<HashSet<_>>().len(),
        signing_kids.len(),
        "a retired key never signs again"
    );
    assert!(
        failures.is_empty(),
        "{} of {exchanges} verifications failed: {failures:?}",
        failures.len()
    );
    // Every key that signed is still published (tokens it signed may be live).
    let (jwks, _) = fetch_jwks(&app).await;
    for kid in &signing_kids {
        assert!(jwks.find(kid).is_some(), "{kid} left the JWKS too early");
    }
}

#[tokio::test]
async fn keys_are_listed_and_rotated_on_demand() {
    let app = spawn_app_with(|c| c.jwks_max_age = HumanDuration(Duration::from_secs(1))).await;
    let listed = admin_json(&app, Method::GET, "/keys").await;
    let states: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "active").count(),
        1,
        "{listed}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "next").count(),
        1,
        "{listed}"
    );
    let next = kid_in_state(&listed, "next");
    let active = kid_in_state(&listed, "active");

    // The next key was published a moment ago: rotating now could fail cached verifiers.
    let early = app
        .admin(Method::POST, "/keys/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    let body: Value = early.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("published"),
        "{body}"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rotated = app
        .admin(Method::POST, "/keys/rotate")
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let body: Value = rotated.json().await.unwrap();
    let state_of = |kid: &Value| {
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| &k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&next), Some(json!("active")));
    assert_eq!(state_of(&active), Some(json!("retired")));
    let retired = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == active)
        .unwrap();
    assert!(
        retired["unpublish_at"].as_i64().unwrap() >= retired["retired_at"].as_i64().unwrap() + 3600,
        "{retired}"
    );
    let token = deploy_token(&app).await;
    assert_eq!(
        json!(jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()),
        next
    );

    // Only admin:write may rotate; the change is audited.
    assert_audited_and_guarded(&app, "/keys/rotate", "rotate_keys").await;
}

/// An admin API answer as JSON.
async fn admin_json(app: &TestApp, method: Method, path: &str) -> Value {
    app.admin(method, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The kid of the key in `state` in a `{"keys": [...]}` answer.
fn kid_in_state(keys: &Value, state: &str) -> Value {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == state)
        .unwrap_or_else(|| panic!("no {state} key in {keys}"))["kid"]
        .clone()
}

/// The admin change `reason` is in the audit log, and `path` refuses anonymous callers.
async fn assert_audited_and_guarded(app: &TestApp, path: &str, reason: &str) {
    let audit = admin_json(app, Method::GET, "/audit?kind=admin").await;
    let events = audit["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["reason"] == reason), "{audit}");
    let anonymous = app
        .client
        .post(format!("{}/admin/v1{path}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_kek_and_with_a_wrong_one() {
    let app = spawn_app().await;
    let policies = app.config.policies_dir.clone().unwrap();
    let mut missing = app.config.clone();
    missing.key_encryption_key = None;
    let err = Application::build(missing, Options::default())
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("openssl rand -base64 32"), "{text}");
    assert!(text.contains("STS_BROKER_KEY_ENCRYPTION_KEY"), "{text}");

    let pool = sqlx::SqlitePool::connect(app.config.database_url.expose())
        .await
        .unwrap();
    let keys_before: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, private_key FROM signing_keys ORDER BY kid")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys_before.len(), 2);

    // A new policy file is waiting; a refused start must not apply it.
    std::fs::write(
        policies.join("later.yaml"),
        "kind: TrustPolicy\nname: later\nissuer: fake\nsubject: x\ngrant: {audience: y}\n",
    )
    .unwrap();
    let versions = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM document_versions")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    };
    let versions_before = versions().await;
    let mut wrong = app.config.clone();
    wrong.key_encryption_key = Some(
        sts_broker::config::Kek::parse(&Secret::new(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ))
        .unwrap(),
    );
    let err = Application::build(wrong, Options::default())
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("does not decrypt"), "{text}");

    let keys_after: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, private_key FROM signing_keys ORDER BY kid")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(keys_before, keys_after, "a wrong KEK changes nothing");
    assert_eq!(versions().await, versions_before, "no policy was applied");
    // Sealed at rest: no stored key is a plain PKCS#8 document (DER SEQUENCE, 0x30).
    for (kid, private) in &keys_after {
        assert_ne!(private.first(), Some(&0x30), "{kid} is stored in the clear");
    }
    // The right KEK still opens them.
    let again = Application::build(app.config.clone(), Options::default()).await;
    assert!(again.is_ok());
}

/// `POST /introspect` with `token`, authenticated by `caller`.
async fn introspect(app: &TestApp, caller: &str, token: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/introspect", app.address))
        .bearer_auth(caller)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", token),
            ("token_type_hint", "access_token"),
        ]))
        .send()
        .await
        .unwrap()
}

/// The introspection answer for `token`.
async fn introspect_json(app: &TestApp, caller: &str, token: &str) -> Value {
    introspect(app, caller, token).await.json().await.unwrap()
}

#[tokio::test]
async fn introspection_answers_active_only_for_live_tokens() {
    let app = spawn_app().await;
    let caller = broker_token(&app, "aa-introspector", &app.address, &["introspect"]).await;
    let token = deploy_token(&app).await;

    let live: Value = introspect_json(&app, &caller, &token).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["client_id"], "api-deploy");
    assert_eq!(live["aud"], "https://deploy.internal");
    assert_eq!(live["iss"], app.address.as_str());
    for field in ["sub", "scope", "exp", "iat", "jti"] {
        assert!(!live[field].is_null(), "{field}: {live}");
    }

    // Garbled, tampered, foreign (signed by the upstream issuer) and unknown: all just inactive.
    let mut tampered = token.clone();
    tampered.insert(tampered.len() - 5, 'A');
    tampered.truncate(token.len());
    let foreign = app.idp.token(&app.idp.claims());
    let huge = "a".repeat(20_000);
    for other in [
        "garbage",
        tampered.as_str(),
        foreign.as_str(),
        "a.b.c",
        huge.as_str(),
    ] {
        let answer = introspect(&app, &caller, other).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.json::<Value>().await.unwrap(),
            json!({"active": false})
        );
    }

    // Callers need a broker token for the broker itself with scope introspect.
    let anonymous = app
        .client
        .post(format!("{}/introspect", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong_audience = introspect(&app, &token, &token).await;
    assert_eq!(
        wrong_audience.status(),
        401,
        "a token for another audience is no credential"
    );
    let no_scope = broker_token(&app, "aa-introspector", &app.address, &["other"]).await;
    assert_eq!(introspect(&app, &no_scope, &token).await.status(), 403);
    let missing = app
        .client
        .post(format!("{}/introspect", app.address))
        .bearer_auth(&caller)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("nothing=x")
        .send()
        .await
        .unwrap();
    crate::helpers::expect_error(missing, 400, "invalid_request").await;
    let get = app.get("/introspect").await;
    assert_eq!(get.status(), 405);
}

#[tokio::test]
async fn expired_tokens_are_inactive() {
    // `branches-read` sets no ttl, so its tokens live default_ttl (1 s); the caller's policy
    // asks for ten minutes.
    let app = spawn_app_with(|c| c.default_ttl = HumanDuration(Duration::from_secs(1))).await;
    let doc = json!({
        "issuer": "fake",
        "subject": "repo:acme/api:ref:refs/heads/main",
        "grant": {"audience": [app.address], "scopes": ["introspect"], "ttl": "10m"},
    });
    let put = app
        .admin(Method::PUT, "/policies/aa-introspector")
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let subject = app.idp.token(&app.idp.claims());
    let caller: Value = app
        .exchange(&subject, Some(&app.address), None)
        .await
        .json()
        .await
        .unwrap();
    let caller = caller["access_token"].as_str().unwrap();
    let short: Value = app
        .exchange(&subject, Some("https://artifacts.internal"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(short["expires_in"], 1);
    let short = short["access_token"].as_str().unwrap();
    assert_eq!(introspect_json(&app, caller, short).await["active"], true);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired: Value = introspect_json(&app, caller, short).await;
    assert_eq!(expired, json!({"active": false}));
}

#[tokio::test]
async fn revoked_tokens_are_inactive_at_once() {
    let app = spawn_app().await;
    let caller = broker_token(&app, "aa-introspector", &app.address, &["introspect"]).await;
    let first = deploy_token(&app).await;
    let second = deploy_token(&app).await;
    let claims = crate::helpers::claims_of;
    let jti = claims(&first)["jti"].as_str().unwrap().to_owned();

    let revoked = app
        .admin(Method::POST, &format!("/tokens/{jti}/revoke"))
        .json(&json!({"reason": "leaked in a build log"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let inactive: Value = introspect_json(&app, &caller, &first).await;
    assert_eq!(inactive, json!({"active": false}));
    let other: Value = introspect_json(&app, &caller, &second).await;
    assert_eq!(other["active"], true, "only that jti");

    // Everything issued under a policy up to now; later tokens are unaffected.
    let by_policy = app
        .admin(Method::POST, "/tokens/revoke")
        .json(&json!({"policy": "api-deploy", "reason": "policy was too broad"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_policy.status(), 200);
    let other: Value = introspect_json(&app, &caller, &second).await;
    assert_eq!(other["active"], false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = deploy_token(&app).await;
    let later: Value = introspect_json(&app, &caller, &later).await;
    assert_eq!(later["active"], true, "issued after the revocation");

    // Revocation also ends an admin credential, and survives a restart.
    let admin = broker_token(
        &app,
        "aa-admins",
        &format!("{}/admin", app.address),
        &["admin:read"],
    )
    .await;
    let admin_jti = claims(&admin)["jti"].as_str().unwrap().to_owned();
    let list = |bearer: String, base: String| {
        let client = app.client.clone();
        async move {
            client
                .get(format!("{base}/admin/v1/revocations"))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(list(admin.clone(), app.address.clone()).await.status(), 200);
    app.admin(Method::POST, &format!("/tokens/{admin_jti}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(list(admin.clone(), app.address.clone()).await.status(), 401);
    let restarted = app.restart().await;
    assert_eq!(list(admin.clone(), restarted.clone()).await.status(), 401);
    let listed: Value = app
        .admin(Method::GET, "/revocations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["revocations"].as_array().unwrap().len(),
        3,
        "{listed}"
    );

    // Bad requests change nothing.
    let empty = app
        .admin(Method::POST, "/tokens/revoke")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let future = app
        .admin(Method::POST, "/tokens/revoke")
        .json(&json!({"subject": "x", "since": "2999-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(future.status(), 400);
    let unknown = app
        .admin(Method::POST, "/tokens/revoke")
        .json(&json!({"polcy": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
}

/// After a compromise every key is replaced at once: the JWKS publishes only new keys,
/// tokens signed before stop verifying, new tokens carry the new key; audited.
#[tokio::test]
async fn a_compromise_replaces_every_key_at_once() {
    let app = spawn_app().await;
    let kids = |keys: &Value| -> Vec<String> {
        let mut kids: Vec<String> = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    };
    let before = deploy_token(&app).await;
    let old = admin_json(&app, Method::GET, "/keys").await;
    let replaced = app
        .admin(Method::POST, "/keys/replace")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let new: Value = replaced.json().await.unwrap();
    let mut states: Vec<&str> = new["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(states, ["active", "next"], "{new}");
    for kid in kids(&new) {
        assert!(!kids(&old).contains(&kid), "{kid} was a key before");
    }
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kids(&jwks), kids(&new), "only the new keys are published");

    let caller = broker_token(&app, "aa-introspector", &app.address, &["introspect"]).await;
    let stale = introspect_json(&app, &caller, &before).await;
    assert_eq!(stale, json!({"active": false}));
    let after = deploy_token(&app).await;
    let active = kid_in_state(&new, "active");
    assert_eq!(
        json!(jsonwebtoken::decode_header(&after).unwrap().kid.unwrap()),
        active
    );
    assert_eq!(introspect_json(&app, &caller, &after).await["active"], true);

    assert_audited_and_guarded(&app, "/keys/replace", "replace_keys").await;
}
