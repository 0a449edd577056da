//! `serve --dev`: a built-in development identity provider and example policies, so a
//! newcomer can run a whole exchange on one machine. Never available outside `--dev`, and
//! `--dev` is refused unless the broker listens on loopback.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::mint::SigningAlgorithm;
use crate::mint::{KeyError, SigningKey};
use crate::policy::{IssuerDoc, TrustPolicyDoc};

/// Path of the development issuer under the broker.
pub const PATH: &str = "/dev/idp";
/// Longest lifetime of a development token.
const MAX_DEV_TTL: i64 = 3600;

/// The development identity provider: an in-memory key, its discovery and JWKS.
pub struct DevIdp {
    key: SigningKey,
    issuer: String,
    audience: String,
}

/// What `POST /dev/idp/token` accepts; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    /// The token's `sub` (default: a GitHub-Actions-like subject).
    pub sub: Option<String>,
    /// The token's `aud` (default: the broker's issuer URL).
    pub aud: Option<String>,
    /// Extra claims, overriding the defaults.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Lifetime in seconds (default 3600, at most 3600: an issued token never outlives it).
    pub ttl_seconds: Option<i64>,
}

impl DevIdp {
    /// A fresh provider for a broker whose issuer is `broker_issuer`.
    pub fn new(broker_issuer: &str) -> Result<Self, KeyError> {
        let (key, _) = SigningKey::generate(SigningAlgorithm::ES256)?;
        Ok(Self {
            key,
            issuer: format!("{broker_issuer}{PATH}"),
            audience: broker_issuer.to_owned(),
        })
    }

    /// The example issuer and policy that trust this provider.
    pub fn documents(&self) -> (IssuerDoc, TrustPolicyDoc) {
        let issuer = serde_json::from_value(json!({
            "name": "dev",
            "url": self.issuer,
            "audiences": [self.audience],
            "algorithms": ["ES256"],
            "description": "built-in development identity provider (serve --dev)",
        }))
        .expect("static development issuer document is valid");
        let policy = serde_json::from_value(json!({
            "name": "dev-acme-main",
            "description": "main-branch jobs of acme repositories (development example)",
            "issuer": "dev",
            "subject": {"glob": "repo:acme/*:ref:refs/heads/main"},
            "claims": {"repository_owner_id": "2001"},
            "grant": {
                "audience": ["https://api.example.internal"],
                "scopes": ["read", "write"],
                "ttl": "15m",
                "subject": "{repository}",
                "claims": {"repository": "{repository}", "ref": "{ref}"},
            },
        }))
        .expect("static development policy document is valid");
        (issuer, policy)
    }

    /// Mints a development token.
    pub fn mint(&self, req: DevTokenRequest, now: i64) -> Result<String, KeyError> {
        let ttl = req.ttl_seconds.unwrap_or(MAX_DEV_TTL).clamp(1, MAX_DEV_TTL);
        let mut claims = json!({
            "iss": self.issuer,
            "sub": req.sub.unwrap_or_else(|| "repo:acme/api:ref:refs/heads/main".into()),
            "aud": req.aud.unwrap_or_else(|| self.audience.clone()),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid::Uuid::new_v4().to_string(),
            "repository": "acme/api",
            "repository_id": "1001",
            "repository_owner": "acme",
            "repository_owner_id": "2001",
            "ref": "refs/heads/main",
            "workflow": "deploy",
            "actor": "octocat",
        });
        if let Value::Object(map) = &mut claims {
            map.extend(req.claims);
        }
        self.key.sign_jwt(&claims, "JWT")
    }
}

/// Registers the provider's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        &format!("{PATH}/.well-known/openid-configuration"),
        web::get().to(discovery),
    )
    .route(&format!("{PATH}/jwks"), web::get().to(jwks))
    .route(&format!("{PATH}/token"), web::post().to(token));
}

async fn discovery(idp: web::Data<DevIdp>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "issuer": idp.issuer,
        "jwks_uri": format!("{}/jwks", idp.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn jwks(idp: web::Data<DevIdp>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"keys": [idp.key.jwk]}))
}

async fn token(idp: web::Data<DevIdp>, body: web::Bytes) -> HttpResponse {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        DevTokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(req) => req,
            Err(e) => {
                return HttpResponse::BadRequest()
                    .json(json!({"error": "invalid_request", "error_description": e.to_string()}));
            }
        }
    };
    match idp.mint(req, crate::jose::unix_now()) {
        Ok(token) => HttpResponse::Ok().json(json!({"token": token})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}
