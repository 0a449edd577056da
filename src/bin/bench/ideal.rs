//! The ideal handler: the least work any exchange must do. It verifies the inbound RS256
//! token with a key parsed once, reads its claims, and signs an ES256 token with a key pair
//! parsed once, answering the broker's JSON shape. No policy, no audit, no checks beyond the
//! signature: a ceiling, not a competitor.

use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256,
};
use serde_json::{Value, json};
use sts_broker::jose::{b64url, b64url_decode};

struct Keys {
    inbound: ParsedPublicKey,
    signing: EcdsaKeyPair,
    rng: SystemRandom,
}

/// Serves `POST /token` and `GET /healthz` on `port` until killed.
pub async fn serve(port: u16) -> anyhow::Result<()> {
    let rsa = crate::issuer::rsa_key()?;
    let der = rsa
        .public_key()
        .as_der()
        .map_err(|e| anyhow::anyhow!("RSA public key: {e}"))?;
    let inbound = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref())
        .map_err(|e| anyhow::anyhow!("RSA public key: {e}"))?;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| anyhow::anyhow!("ES256 key: {e}"))?;
    let signing = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|e| anyhow::anyhow!("ES256 key: {e}"))?;
    let keys = web::Data::new(Keys {
        inbound,
        signing,
        rng,
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).context("binding the ideal handler")?;
    HttpServer::new(move || {
        App::new()
            .app_data(keys.clone())
            .route("/token", web::post().to(token))
            .route("/healthz", web::get().to(HttpResponse::Ok))
    })
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}

async fn token(body: web::Bytes, keys: web::Data<Keys>) -> HttpResponse {
    match exchange(&body, &keys) {
        Some(access_token) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(json!({
                "access_token": access_token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 900,
                "scope": "read deploy:write",
            })),
        None => HttpResponse::BadRequest().json(json!({"error": "invalid_request"})),
    }
}

fn exchange(body: &[u8], keys: &Keys) -> Option<String> {
    let subject_token = form_urlencoded::parse(body)
        .find(|(k, _)| k == "subject_token")
        .map(|(_, v)| v)?;
    let (signing_input, signature) = subject_token.rsplit_once('.')?;
    let signature = b64url_decode(signature)?;
    keys.inbound
        .verify_sig(signing_input.as_bytes(), &signature)
        .ok()?;
    let claims: Value =
        serde_json::from_slice(&b64url_decode(signing_input.split_once('.')?.1)?).ok()?;
    let now = sts_broker::jose::unix_now();
    let issued = json!({
        "iss": "http://ideal",
        "sub": claims.get("sub")?,
        "aud": "https://api.internal.example",
        "exp": now + 900,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": "read deploy:write",
        "act": {"iss": claims.get("iss")?, "sub": claims.get("sub")?},
    });
    let header = r#"{"alg":"ES256","typ":"at+jwt"}"#;
    let mut token = b64url(header.as_bytes());
    token.push('.');
    token.push_str(&b64url(issued.to_string().as_bytes()));
    let signature = keys.signing.sign(&keys.rng, token.as_bytes()).ok()?;
    token.push('.');
    token.push_str(&b64url(signature.as_ref()));
    Some(token)
}
