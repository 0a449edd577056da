//! The fake OIDC issuer: discovery and JWKS for any number of issuers (one per path prefix,
//! `http://127.0.0.1:PORT/gha-N`), all signing with the RS256 test key, and the minting of
//! GitHub-Actions-shaped inbound tokens.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use serde_json::{Value, json};
use sts_broker::jose::b64url;

/// The test identity provider's key (also in `tests/fixtures`), so the ideal handler, which
/// runs in another process, knows the public half without fetching it.
pub const RSA_PEM: &str = include_str!("../../../tests/fixtures/idp_rsa_test_key.pem");
/// The `kid` every fake issuer publishes its key under.
pub const KID: &str = "bench-rsa-1";

/// The RSA key pair of [`RSA_PEM`].
pub fn rsa_key() -> anyhow::Result<RsaKeyPair> {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    RsaKeyPair::from_der(&der).map_err(|e| anyhow::anyhow!("fixture RSA key: {e}"))
}

/// The running fake issuer.
pub struct FakeIssuer {
    /// `http://127.0.0.1:PORT`; issuer N is `{base}/gha-N`.
    pub base: String,
    /// Discovery plus JWKS requests served.
    pub fetches: Arc<AtomicU64>,
    key: Arc<RsaKeyPair>,
}

struct State {
    base: String,
    jwks: Value,
    fetches: Arc<AtomicU64>,
}

impl FakeIssuer {
    /// Starts the server on a loopback port (one worker thread).
    pub fn start() -> anyhow::Result<Self> {
        let key = rsa_key()?;
        let public = key.public_key();
        let jwk = json!({
            "kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
            "n": b64url(public.modulus().big_endian_without_leading_zero()),
            "e": b64url(public.exponent().big_endian_without_leading_zero()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fake issuer")?;
        let base = format!("http://{}", listener.local_addr()?);
        let fetches = Arc::new(AtomicU64::new(0));
        let state = web::Data::new(State {
            base: base.clone(),
            jwks: json!({"keys": [jwk]}),
            fetches: fetches.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route(
                    "/{issuer}/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/{issuer}/jwks", web::get().to(jwks))
        })
        .workers(1)
        .listen(listener)?
        .run();
        tokio::spawn(server);
        Ok(Self {
            base,
            fetches,
            key: Arc::new(key),
        })
    }

    /// The URL (`iss`) of issuer `n`.
    pub fn issuer_url(&self, n: usize) -> String {
        issuer_url(&self.base, n)
    }

    /// Discovery and JWKS requests served so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// `count` distinct RS256 tokens; token `k` comes from issuer `k % issuers` for
    /// repository `(k / issuers) % repos` of that issuer's organisation. Minted on every core.
    pub fn mint_all(&self, count: usize, issuers: usize, repos: usize) -> Vec<Minted> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let now = sts_broker::jose::unix_now();
        let chunks: Vec<Vec<usize>> = (0..threads)
            .map(|t| (t..count).step_by(threads).collect())
            .collect();
        let mut out: Vec<(usize, Minted)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|ks| {
                    s.spawn(move || {
                        ks.into_iter()
                            .map(|k| {
                                let (i, r) = (k % issuers, (k / issuers) % repos);
                                (k, self.mint(i, r, k as u64, now))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("minting thread"))
                .collect()
        });
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// One token of issuer `i`, repository `r`, as GitHub Actions shapes them.
    fn mint(&self, i: usize, r: usize, serial: u64, now: i64) -> Minted {
        let (owner, repo) = (org(i), format!("{}/{}", org(i), repo_name(r)));
        let claims = json!({
            "iss": self.issuer_url(i),
            "aud": audience(i),
            "sub": format!("repo:{repo}:ref:refs/heads/main"),
            "iat": now - 5,
            "nbf": now - 5,
            // GitHub's tokens live minutes; these must outlive a full run.
            "exp": now + 3600,
            "jti": sts_broker::ids::random().to_string(),
            "repository": repo,
            "repository_id": repository_id(i, r),
            "repository_owner": owner,
            "repository_owner_id": owner_id(i),
            "repository_visibility": "private",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "ref_protected": "true",
            "sha": format!("{:040x}", (serial as u128) * 0x9e37_79b9_7f4a_7c15),
            "workflow": "deploy",
            "workflow_ref": format!("{repo}/.github/workflows/deploy.yml@refs/heads/main"),
            "job_workflow_ref": format!("{owner}/workflows/.github/workflows/deploy.yml@refs/tags/v1.4.2"),
            "event_name": "push",
            "actor": "octocat",
            "actor_id": "583231",
            "run_id": (9_000_000_000u64 + serial).to_string(),
            "run_number": (1 + serial % 5000).to_string(),
            "run_attempt": "1",
            "runner_environment": "github-hosted",
        });
        let header = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
        let mut token = b64url(header.to_string().as_bytes());
        token.push('.');
        token.push_str(&b64url(claims.to_string().as_bytes()));
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing");
        token.push('.');
        token.push_str(&b64url(&sig));
        Minted {
            token,
            audience: grant_audience(r),
        }
    }
}

/// An inbound token and the audience its exchange asks for.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The compact RS256 JWS.
    pub token: String,
    /// `audience` of the exchange request.
    pub audience: String,
}

/// `iss` of issuer `n` under `base`.
pub fn issuer_url(base: &str, n: usize) -> String {
    format!("{base}/gha-{n}")
}
/// The inbound `aud` issuer `n`'s tokens carry (each issuer has its own).
pub fn audience(n: usize) -> String {
    format!("https://sts.bench.example/{n}")
}
/// Issuer `n`'s organisation.
pub fn org(n: usize) -> String {
    format!("org{n}")
}
/// Repository `r` of an organisation.
pub fn repo_name(r: usize) -> String {
    format!("service-{r}")
}
/// The immutable owner id of issuer `n`'s organisation.
pub fn owner_id(n: usize) -> String {
    (1_340_000 + n).to_string()
}
/// The immutable id of repository `r` of issuer `n`'s organisation.
pub fn repository_id(n: usize, r: usize) -> String {
    (890_000_000 + n * 100_000 + r).to_string()
}
/// The audience policies for repository `r` grant (ten APIs).
pub fn grant_audience(r: usize) -> String {
    format!("https://api-{}.internal.example", r % 10)
}

async fn discovery(state: web::Data<State>, path: web::Path<String>) -> HttpResponse {
    state.fetches.fetch_add(1, Ordering::Relaxed);
    let iss = format!("{}/{}", state.base, path.into_inner());
    HttpResponse::Ok().json(json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}))
}

async fn jwks(state: web::Data<State>) -> HttpResponse {
    state.fetches.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok().json(&state.jwks)
}
