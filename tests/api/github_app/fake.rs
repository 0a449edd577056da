//! A fake GitHub API: it checks the app JWT as GitHub does (RS256 with the app's public
//! key, `iss`, the `iat`/`exp` window), knows each owner's installation, creates tokens only
//! within what the installation has, and can fail as GitHub does.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use sts_broker::jose::unix_now;

/// How the fake answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// As GitHub does.
    Normal,
    /// Every request gets this status.
    Status(u16),
    /// The primary rate limit: 403, no requests left until `reset_in` seconds from now.
    PrimaryLimit { reset_in: i64 },
    /// A secondary rate limit: 429 with `Retry-After`.
    SecondaryLimit { retry_after: u64 },
    /// Answers normally, this much later (a hung GitHub, with a long delay).
    Delay(std::time::Duration),
}

/// An app's installation on one account.
pub struct Installation {
    pub id: u64,
    /// `orgs` or `users`.
    pub kind: &'static str,
    pub repositories: Vec<&'static str>,
    pub permissions: BTreeMap<&'static str, &'static str>,
}

struct State {
    app_id: u64,
    key: DecodingKey,
    installations: HashMap<String, Installation>,
    mode: Mutex<Mode>,
    calls: AtomicUsize,
    lookups: AtomicUsize,
    token_bodies: Mutex<Vec<Value>>,
    tokens: Mutex<Vec<String>>,
}

/// The running fake.
pub struct FakeGitHub {
    pub url: String,
    state: web::Data<State>,
}

impl FakeGitHub {
    /// Serves on a random loopback port; `n`/`e` are the app's public key.
    pub async fn start(
        app_id: u64,
        n: &[u8],
        e: &[u8],
        installs: Vec<(&str, Installation)>,
    ) -> Self {
        let key = DecodingKey::from_rsa_raw_components(n, e);
        let state = web::Data::new(State {
            app_id,
            key,
            installations: installs
                .into_iter()
                .map(|(owner, i)| (owner.to_ascii_lowercase(), i))
                .collect(),
            mode: Mutex::new(Mode::Normal),
            calls: AtomicUsize::new(0),
            lookups: AtomicUsize::new(0),
            token_bodies: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(64 * 1024))
                .route("/{kind}/{owner}/installation", web::get().to(installation))
                .route(
                    "/app/installations/{id}/access_tokens",
                    web::post().to(access_token),
                )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, state }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Every request received.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Installation lookups received.
    pub fn lookups(&self) -> usize {
        self.state.lookups.load(Ordering::SeqCst)
    }

    /// The body of the last token request.
    pub fn last_token_request(&self) -> Option<Value> {
        self.state.token_bodies.lock().unwrap().last().cloned()
    }

    /// Tokens created so far.
    pub fn tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().clone()
    }
}

#[derive(serde::Deserialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
}

/// GitHub's checks of an app JWT; `Some` is the 401 to answer.
fn check_jwt(state: &State, req: &HttpRequest) -> Option<HttpResponse> {
    let unauthorized = |why: &str| {
        Some(HttpResponse::Unauthorized().json(json!({"message": format!("bad JWT: {why}")})))
    };
    let Some(jwt) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return unauthorized("no bearer");
    };
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[state.app_id.to_string()]);
    validation.set_required_spec_claims(&["iss", "exp", "iat"]);
    validation.validate_aud = false;
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<AppClaims>(jwt, &state.key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return unauthorized(&e.to_string()),
    };
    let now = unix_now();
    if claims.iat > now || claims.iat < now - 120 {
        return unauthorized("iat outside the window");
    }
    if claims.exp - claims.iat > 600 + 60 || claims.exp > now + 600 {
        return unauthorized("exp too far ahead");
    }
    None
}

/// What `Mode` says instead of a normal answer.
fn misbehave(state: &State) -> Option<HttpResponse> {
    let request_id = ("x-github-request-id", "FAKE:FAILED");
    match state.mode.lock().unwrap().clone() {
        Mode::Normal | Mode::Delay(_) => None,
        Mode::Status(code) => Some(
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .insert_header(request_id)
                .json(json!({"message": "failing"})),
        ),
        Mode::PrimaryLimit { reset_in } => Some(
            HttpResponse::Forbidden()
                .insert_header(("x-ratelimit-remaining", "0"))
                .insert_header(("x-ratelimit-reset", (unix_now() + reset_in).to_string()))
                .insert_header(request_id)
                .json(json!({"message": "API rate limit exceeded"})),
        ),
        Mode::SecondaryLimit { retry_after } => Some(
            HttpResponse::TooManyRequests()
                .insert_header(("retry-after", retry_after.to_string()))
                .insert_header(request_id)
                .json(json!({"message": "secondary rate limit"})),
        ),
    }
}

/// Waits as `Mode::Delay` says.
async fn delay(state: &State) {
    let mode = state.mode.lock().unwrap().clone();
    if let Mode::Delay(d) = mode {
        tokio::time::sleep(d).await;
    }
}

async fn installation(
    state: web::Data<State>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    state.calls.fetch_add(1, Ordering::SeqCst);
    state.lookups.fetch_add(1, Ordering::SeqCst);
    delay(&state).await;
    if let Some(r) = misbehave(&state).or_else(|| check_jwt(&state, &req)) {
        return r;
    }
    let (kind, owner) = path.into_inner();
    match state.installations.get(&owner.to_ascii_lowercase()) {
        Some(i) if i.kind == kind => {
            HttpResponse::Ok().json(json!({"id": i.id, "app_id": state.app_id}))
        }
        _ => HttpResponse::NotFound().json(json!({"message": "Not Found"})),
    }
}

async fn access_token(
    state: web::Data<State>,
    req: HttpRequest,
    id: web::Path<u64>,
    body: web::Json<Value>,
) -> HttpResponse {
    state.calls.fetch_add(1, Ordering::SeqCst);
    delay(&state).await;
    if let Some(r) = misbehave(&state).or_else(|| check_jwt(&state, &req)) {
        return r;
    }
    let body = body.into_inner();
    state.token_bodies.lock().unwrap().push(body.clone());
    let id = id.into_inner();
    let Some(install) = state.installations.values().find(|i| i.id == id) else {
        return HttpResponse::NotFound().json(json!({"message": "Not Found"}));
    };
    let unprocessable = |m: &str| HttpResponse::UnprocessableEntity().json(json!({"message": m}));
    let repositories: Vec<String> = match body.get("repositories") {
        None => install.repositories.iter().map(|r| r.to_string()).collect(),
        Some(list) => serde_json::from_value(list.clone()).unwrap_or_default(),
    };
    if repositories
        .iter()
        .any(|r| !install.repositories.contains(&r.as_str()))
    {
        return unprocessable(
            "There is at least one repository that does not exist or is not accessible",
        );
    }
    let rank = |l: &str| ["read", "write", "admin"].iter().position(|x| *x == l);
    let asked: BTreeMap<String, String> =
        serde_json::from_value(body.get("permissions").cloned().unwrap_or(json!({})))
            .unwrap_or_default();
    for (name, level) in &asked {
        let has = install.permissions.get(name.as_str()).and_then(|l| rank(l));
        if has.is_none() || rank(level) > has {
            return unprocessable(
                "The permissions requested are not granted to this installation.",
            );
        }
    }
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    state.tokens.lock().unwrap().push(token.clone());
    HttpResponse::Created()
        .insert_header((
            "x-github-request-id",
            format!("FAKE:{id}:{}", state.tokens.lock().unwrap().len()),
        ))
        .json(json!({
            "token": token,
            "expires_at": sts_broker::time::rfc3339(unix_now() + 3600),
            "permissions": asked,
            "repositories": repositories.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        }))
}
