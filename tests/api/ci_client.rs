//! `sts-broker exchange`, the CI client, run as the real binary against real servers: each
//! token source, retries, GitHub Actions output, and errors that say what to fix.

use std::net::TcpListener;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::{AUDIENCE, TestApp, claims_of as claims, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_sts-broker");

/// Runs `sts-broker exchange …` with a clean CI environment plus `env`, feeding `stdin`.
async fn exchange(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("exchange")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for var in [
            "GITHUB_ACTIONS",
            "GITHUB_OUTPUT",
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "STS_BROKER_URL",
        ] {
            cmd.env_remove(var);
        }
        if !args.iter().any(|a| a == "--kubernetes-token-path") {
            cmd.args(["--kubernetes-token-path", "/nonexistent/token"]);
        }
        cmd.envs(env);
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_deploy_token(o: &Output, app: &TestApp) {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", err(o));
    let token = out(o);
    let c = claims(token.lines().last().unwrap());
    assert_eq!(c["iss"], app.address.as_str());
    assert_eq!(c["aud"], "https://deploy.internal");
    assert_eq!(c["client_id"], "api-deploy");
}

#[tokio::test]
async fn tokens_come_from_a_file_stdin_a_variable_or_kubernetes() {
    let app = spawn_app().await;
    let subject = app.idp.token(&app.idp.claims());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oidc-token");
    std::fs::write(&file, format!("{subject}\n")).unwrap();
    let file = file.display().to_string();
    let base = [
        "--broker",
        app.address.as_str(),
        "--audience",
        "https://deploy.internal",
    ];

    let from_file = exchange(&[&base[..], &["--token-file", &file]].concat(), &[], None).await;
    assert_deploy_token(&from_file, &app);
    let from_stdin = exchange(
        &[&base[..], &["--token-file", "-"]].concat(),
        &[],
        Some(&subject),
    )
    .await;
    assert_deploy_token(&from_stdin, &app);
    let from_env = exchange(
        &[&base[..], &["--token-env", "CI_JOB_JWT_V2"]].concat(),
        &[("CI_JOB_JWT_V2", &subject)],
        None,
    )
    .await;
    assert_deploy_token(&from_env, &app);
    let from_kubernetes = exchange(
        &[&base[..], &["--kubernetes-token-path", &file]].concat(),
        &[],
        None,
    )
    .await;
    assert_deploy_token(&from_kubernetes, &app);

    // Scopes narrow the grant; JSON output carries the expiry.
    let json_out = exchange(
        &[
            &base[..],
            &[
                "--token-file",
                &file,
                "--scope",
                "artifacts:read",
                "--output",
                "json",
            ],
        ]
        .concat(),
        &[],
        None,
    )
    .await;
    assert_eq!(json_out.status.code(), Some(0), "{}", err(&json_out));
    let body: Value = serde_json::from_str(&out(&json_out)).unwrap();
    assert_eq!(body["scope"], "artifacts:read");
    assert_eq!(body["expires_in"], 600);
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));

    // Nothing to read: say how to provide a token.
    let none = exchange(&base, &[], None).await;
    assert_eq!(none.status.code(), Some(2));
    assert!(err(&none).contains("--token-file"), "{}", err(&none));
    let unset = exchange(
        &[&base[..], &["--token-env", "NOT_SET_ANYWHERE"]].concat(),
        &[],
        None,
    )
    .await;
    assert_eq!(unset.status.code(), Some(2));
    assert!(err(&unset).contains("id_tokens"), "{}", err(&unset));
    std::fs::write(dir.path().join("junk"), "not a token").unwrap();
    let junk = exchange(
        &[
            &base[..],
            &[
                "--token-file",
                &dir.path().join("junk").display().to_string(),
            ],
        ]
        .concat(),
        &[],
        None,
    )
    .await;
    assert_eq!(junk.status.code(), Some(2));
    assert!(err(&junk).contains("not a JWT"), "{}", err(&junk));
}

/// A fake GitHub Actions ID-token endpoint: checks the request bearer, records the audience
/// asked for, and mints a token for it with the fake issuer's key.
struct FakeActions {
    url: String,
    audiences: Arc<std::sync::Mutex<Vec<String>>>,
}

const REQUEST_TOKEN: &str = "actions-request-token-xyz";

async fn start_fake_actions(app: &TestApp) -> FakeActions {
    let audiences = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = audiences.clone();
    let claims = app.idp.claims();
    let tokens: Arc<dyn Fn(Value) -> String + Send + Sync> = {
        let signed: std::collections::HashMap<String, String> = [AUDIENCE, app.address.as_str()]
            .iter()
            .map(|aud| {
                let mut c = claims.clone();
                c["aud"] = json!(aud);
                (aud.to_string(), app.idp.token(&c))
            })
            .collect();
        Arc::new(move |aud: Value| {
            signed
                .get(aud.as_str().unwrap_or(""))
                .cloned()
                .unwrap_or_default()
        })
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/_apis/token?api-version=2.0",
        listener.local_addr().unwrap().port()
    );
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        let tokens = tokens.clone();
        App::new().route(
            "/_apis/token",
            web::get().to(move |req: HttpRequest| {
                let seen = seen.clone();
                let tokens = tokens.clone();
                async move {
                    let authorised = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        == Some(&format!("Bearer {REQUEST_TOKEN}"));
                    if !authorised {
                        return HttpResponse::Unauthorized().finish();
                    }
                    let query: Vec<(String, String)> =
                        form_urlencoded::parse(req.query_string().as_bytes())
                            .into_owned()
                            .collect();
                    assert!(
                        query.iter().any(|(k, v)| k == "api-version" && v == "2.0"),
                        "kept the URL's own query"
                    );
                    let audience = query
                        .iter()
                        .find(|(k, _)| k == "audience")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    seen.lock().unwrap().push(audience.clone());
                    HttpResponse::Ok().json(json!({"count": 1, "value": tokens(json!(audience))}))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    FakeActions { url, audiences }
}

#[tokio::test]
async fn github_actions_token_request_masking_and_output() {
    let app = spawn_app().await;
    let actions = start_fake_actions(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let output_file = dir.path().join("github_output");
    let output_path = output_file.display().to_string();
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", actions.url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
        ("GITHUB_OUTPUT", output_path.as_str()),
        ("STS_BROKER_URL", app.address.as_str()),
    ];
    let ok = exchange(
        &[
            "--audience",
            "https://deploy.internal",
            "--id-token-audience",
            AUDIENCE,
            "--github-output",
            "token",
        ],
        &env,
        None,
    )
    .await;
    assert_deploy_token(&ok, &app);
    let stdout = out(&ok);
    let token = stdout.lines().last().unwrap();
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!("::add-mask::{token}"),
        "masked before it is printed"
    );
    assert_eq!(
        std::fs::read_to_string(&output_file).unwrap(),
        format!("token={token}\n")
    );
    assert_eq!(actions.audiences.lock().unwrap().as_slice(), [AUDIENCE]);

    // By default the ID token is requested for the broker URL; this broker expects another
    // audience, and the error says which flag fixes it.
    let wrong = exchange(&["--audience", "https://deploy.internal"], &env, None).await;
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "{} {:?}",
        err(&wrong),
        actions.audiences.lock().unwrap()
    );
    assert_eq!(
        actions.audiences.lock().unwrap().last().unwrap(),
        &app.address
    );
    assert!(
        err(&wrong).contains("--id-token-audience"),
        "{}",
        err(&wrong)
    );
    assert!(
        out(&wrong).contains("::error"),
        "a workflow error annotation: {}",
        out(&wrong)
    );

    // In GitHub Actions without `id-token: write` the request variables are missing.
    let no_permission = exchange(
        &["--audience", "x"],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("STS_BROKER_URL", app.address.as_str()),
        ],
        None,
    )
    .await;
    assert_eq!(no_permission.status.code(), Some(2));
    assert!(
        err(&no_permission).contains("id-token: write"),
        "{}",
        err(&no_permission)
    );
}

#[tokio::test]
async fn a_denial_names_the_request_id_to_give_an_admin() {
    let app = spawn_app().await;
    let subject = app.idp.token(
        &app.idp
            .claims_with(json!({"sub": "repo:other/x:ref:refs/heads/main"})),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, &subject).unwrap();
    let denied = exchange(
        &[
            "--broker",
            &app.address,
            "--audience",
            "https://deploy.internal",
            "--token-file",
            &file.display().to_string(),
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(denied.status.code(), Some(1));
    let text = err(&denied);
    assert!(
        text.contains("policy explain") && text.contains("request id"),
        "{text}"
    );
    let untargeted = exchange(
        &[
            "--broker",
            &app.address,
            "--audience",
            "https://nobody.internal",
            "--token-file",
            &file.display().to_string(),
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(untargeted.status.code(), Some(1));
}

/// A broker stand-in that answers from a script, counting requests.
async fn scripted_broker(script: Vec<(u16, Option<&'static str>)>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let script = Arc::new(script);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        let script = script.clone();
        App::new().route(
            "/token",
            web::post().to(move |body: String| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, retry_after) = script[n.min(script.len() - 1)];
                assert!(body.contains("subject_token="), "the form is sent every time");
                async move {
                    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                    if let Some(seconds) = retry_after {
                        response.insert_header(("retry-after", seconds));
                    }
                    match status {
                        200 => response.json(json!({"access_token": "aaa.bbb.ccc", "token_type": "Bearer", "expires_in": 60})),
                        400 => response.json(json!({"error": "invalid_request", "error_description": "not admitted", "request_id": "req-1"})),
                        _ => response.json(json!({"error": "temporarily_unavailable", "error_description": "busy"})),
                    }
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, hits)
}

const SOME_JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

#[tokio::test]
async fn transient_failures_are_retried_and_refusals_are_not() {
    let (flaky, hits) = scripted_broker(vec![(503, None), (429, Some("1")), (200, None)]).await;
    let ok = exchange(
        &["--broker", &flaky, "--token-file", "-"],
        &[],
        Some(SOME_JWT),
    )
    .await;
    assert_eq!(ok.status.code(), Some(0), "{}", err(&ok));
    assert_eq!(out(&ok).trim(), "aaa.bbb.ccc");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "failed twice, then succeeded"
    );
    assert!(err(&ok).contains("retrying"), "{}", err(&ok));

    let (refusing, hits) = scripted_broker(vec![(400, None)]).await;
    let refused = exchange(
        &["--broker", &refusing, "--token-file", "-"],
        &[],
        Some(SOME_JWT),
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "a 400 is final");

    let (down, hits) = scripted_broker(vec![(503, None)]).await;
    let gave_up = exchange(
        &["--broker", &down, "--token-file", "-", "--attempts", "3"],
        &[],
        Some(SOME_JWT),
    )
    .await;
    assert_eq!(gave_up.status.code(), Some(2));
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Nothing listening: connection errors are retried, then reported.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = exchange(
        &["--broker", &address, "--token-file", "-", "--attempts", "2"],
        &[],
        Some(SOME_JWT),
    )
    .await;
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        err(&unreachable).contains("gave up after 2 attempts"),
        "{}",
        err(&unreachable)
    );
}

/// The octo-sts GitHub Action, unmodified: `GET /sts/exchange?scope=…&scopes=…&identity=…`
/// with values pasted in unencoded, reading `token` on success and `message` otherwise.
#[tokio::test]
async fn the_octo_sts_action_shape_works_unmodified() {
    let app = spawn_app().await;
    let subject = app.idp.token(&app.idp.claims());
    let call = |scope: &'static str, scopes: &'static str, identity: &'static str| {
        let url = format!(
            "{}/sts/exchange?scope={scope}&scopes={scopes}&identity={identity}",
            app.address
        );
        let request = app
            .client
            .get(url)
            .header("authorization", format!("Bearer {subject}"));
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, json) = call("https://deploy.internal", "", "api-deploy").await;
    assert_eq!(status, 200, "{json}");
    let c = claims(json["token"].as_str().expect("json.token"));
    assert_eq!(c["aud"], "https://deploy.internal");
    assert_eq!(c["client_id"], "api-deploy");

    let (status, json) = call("https://nobody.internal", "", "api-deploy").await;
    assert!(status >= 400);
    assert!(json["token"].is_null());
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "json.message: {json}"
    );
}
