//! Two brokers on one PostgreSQL database: what is changed through one is in force at the
//! other within a second (SPEC), and what must happen once happens once. Skipped, saying so,
//! without `TEST_DATABASE_URL`.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sts_broker::config::{Config, HumanDuration};

use crate::helpers::{
    ADMIN_TOKEN, POLICIES, TestApp, claims_of as claims, expect_error, form, spawn_app_full,
};
use crate::testdb::TestDb;

/// Both replicas' `iss`: relying parties see one broker.
const ISSUER: &str = "http://sts-replicas.test";

/// How long a change may take to show before the test fails; the contract is one second,
/// and the observed time is printed.
const DEADLINE: Duration = Duration::from_secs(3);

/// Replay protection on, and a policy that lets the fake issuer's token introspect.
fn policies() -> String {
    let introspector = format!(
        "---\nkind: TrustPolicy\nname: introspector\nissuer: fake\n\
         subject: repo:acme/api:ref:refs/heads/main\n\
         grant:\n  audience: [\"{ISSUER}\"]\n  scopes: [introspect]\n"
    );
    POLICIES.replace(
        "algorithms: [ES256, RS256]",
        "algorithms: [ES256, RS256]\nreplay_protection: true",
    ) + &introspector
}

/// Replica A (with the fake issuer), replica B's address, and their database.
struct Replicas {
    a: TestApp,
    b: String,
    _db: TestDb,
}

async fn start(test: &str, tweak: impl FnOnce(&mut Config)) -> Option<Replicas> {
    let db = TestDb::postgres(test).await?;
    let a = spawn_app_full(&policies(), |c| {
        c.database_url = sts_broker::config::Secret::new(db.url.clone());
        c.issuer_url = Some(sts_broker::config::PublicUrl::parse(ISSUER).unwrap());
        tweak(c);
    })
    .await;
    let b = a.restart().await;
    Some(Replicas { a, b, _db: db })
}

impl Replicas {
    async fn exchange_at(
        &self,
        address: &str,
        token: &str,
        audience: Option<&str>,
    ) -> reqwest::Response {
        let mut params = vec![
            ("grant_type", crate::helpers::GRANT),
            ("subject_token", token),
            ("subject_token_type", crate::helpers::ID_TOKEN),
        ];
        params.extend(audience.map(|a| ("audience", a)));
        self.a
            .client
            .post(format!("{address}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&params))
            .send()
            .await
            .unwrap()
    }

    /// A fresh broker token from A for `audience`.
    async fn issued(&self, audience: Option<&str>) -> String {
        let token = self.a.idp.token(&self.a.idp.claims());
        let issued: Value = self
            .exchange_at(&self.a.address, &token, audience)
            .await
            .json()
            .await
            .unwrap();
        issued["access_token"].as_str().expect("issued").to_owned()
    }

    async fn get_json(&self, address: &str, path: &str) -> Value {
        let response = self
            .a
            .client
            .get(format!("{address}{path}"))
            .bearer_auth(ADMIN_TOKEN);
        response.send().await.unwrap().json().await.unwrap()
    }
}

/// Polls `check` until it holds; fails after [`DEADLINE`]. Prints how long it took.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{what}: after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_policy_added_at_one_replica_admits_at_the_other() {
    let Some(r) = start("a_policy_added_at_one_replica…", |_| {}).await else {
        return;
    };
    let claims =
        r.a.idp
            .claims_with(json!({"sub": "repo:acme/tools:ref:refs/heads/main"}));
    let token = r.a.idp.token(&claims);
    let before = r.exchange_at(&r.b, &token, Some("https://tools.internal"));
    assert_eq!(before.await.status(), 400, "nothing grants it yet");
    let policy = json!({"issuer": "fake", "subject": "repo:acme/tools:ref:refs/heads/main",
        "grant": {"audience": "https://tools.internal"}});
    let created =
        r.a.admin(Method::PUT, "/policies/tools")
            .json(&policy)
            .send()
            .await
            .unwrap();
    assert_eq!(created.status(), 201);
    eventually("policy in force at B", || async {
        // A fresh jti each time: replay protection is on.
        let token = r.a.idp.token(
            &r.a.idp
                .claims_with(json!({"sub": "repo:acme/tools:ref:refs/heads/main"})),
        );
        let answer = r
            .exchange_at(&r.b, &token, Some("https://tools.internal"))
            .await;
        answer.status() == 200
    })
    .await;
}

#[tokio::test]
async fn a_subject_token_used_at_one_replica_is_refused_at_the_other() {
    let Some(r) = start("a_subject_token_used_at_one_replica…", |_| {}).await else {
        return;
    };
    let token = r.a.idp.token(&r.a.idp.claims());
    assert_eq!(
        r.exchange_at(&r.a.address, &token, None).await.status(),
        200
    );
    let replayed = expect_error(
        r.exchange_at(&r.b, &token, None).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        replayed["error_description"]
            .as_str()
            .unwrap()
            .contains("already exchanged")
    );
    let fresh = r.a.idp.token(&r.a.idp.claims());
    assert_eq!(
        r.exchange_at(&r.b, &fresh, None).await.status(),
        200,
        "another jti"
    );
}

#[tokio::test]
async fn a_revocation_at_one_replica_is_answered_by_the_other() {
    let Some(r) = start("a_revocation_at_one_replica…", |_| {}).await else {
        return;
    };
    let caller = r.issued(Some(ISSUER)).await;
    let target = r.issued(None).await;
    let introspect = || async {
        let answer: Value =
            r.a.client
                .post(format!("{}/introspect", r.b))
                .bearer_auth(&caller)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[("token", &target)]))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        answer["active"].as_bool().expect("an introspection answer")
    };
    assert!(
        introspect().await,
        "B accepts A's token before the revocation"
    );
    let jti = claims(&target)["jti"].as_str().unwrap().to_owned();
    let revoked =
        r.a.admin(Method::POST, &format!("/tokens/{jti}/revoke"))
            .send()
            .await
            .unwrap();
    assert_eq!(revoked.status(), 200);
    eventually("revocation in force at B", || async { !introspect().await }).await;
}

/// The kids B publishes and the one it signs with.
async fn keys_at(r: &Replicas, address: &str) -> (Vec<String>, String) {
    let jwks = r.get_json(address, "/.well-known/jwks.json").await;
    let kids = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let ready = r.get_json(address, "/readyz").await;
    (kids, ready["signing_key"].as_str().unwrap().to_owned())
}

fn key_with_state(keys: &Value, state: &str) -> Vec<String> {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == state)
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_rotation_at_one_replica_is_published_by_the_other() {
    // A key is published jwks_max_age (+1 s) before it may sign, and each replica's own
    // timer reloads keys every jwks_max_age / 2: 10 s keeps that timer (5 s) out of the
    // deadline, so only the notification can make B publish the rotation in time.
    let Some(r) = start("a_rotation_at_one_replica…", |c| {
        c.jwks_max_age = HumanDuration(Duration::from_secs(10))
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let keys = loop {
        let answer =
            r.a.admin(Method::POST, "/keys/rotate")
                .send()
                .await
                .unwrap();
        if answer.status() == 200 {
            break answer.json::<Value>().await.unwrap();
        }
        assert_eq!(
            answer.status(),
            409,
            "too soon, until the next key is published long enough"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rotation never allowed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let active = key_with_state(&keys, "active").remove(0);
    let next = key_with_state(&keys, "next").remove(0);
    eventually("rotation in force at B", || async {
        let (published, signing) = keys_at(&r, &r.b).await;
        signing == active && published.contains(&next)
    })
    .await;
}

#[tokio::test]
async fn replicas_due_at_once_rotate_once() {
    let Some(r) = start("replicas_due_at_once_rotate_once", |c| {
        c.jwks_max_age = HumanDuration(Duration::from_secs(1));
        c.key_rotation_period = HumanDuration(Duration::from_secs(2));
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let keys = loop {
        let keys = r.get_json(&r.a.address, "/admin/v1/keys").await;
        if !key_with_state(&keys, "retired").is_empty() {
            break keys;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rotation happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let counts: Vec<usize> = ["retired", "active", "next"]
        .iter()
        .map(|s| key_with_state(&keys, s).len())
        .collect();
    assert_eq!(counts, [1, 1, 1], "one rotation: {keys}");
    let active = key_with_state(&keys, "active").remove(0);
    eventually("both replicas sign with the rotated key", || async {
        keys_at(&r, &r.a.address).await.1 == active && keys_at(&r, &r.b).await.1 == active
    })
    .await;
}
