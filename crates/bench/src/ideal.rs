//! The ideal handler: the least work any exchange must do. It verifies the inbound RS256
//! token with a key parsed once, reads its claims, and signs an ES256 token with a key pair
//! parsed once, answering the broker's JSON shape. No policy, no audit, no checks beyond the
//! signature: a ceiling, not a competitor.
//!
//! With `--ideal-audit-dir`, it also waits for one durable audit record per exchange, made
//! durable by the broker's own audit trail (journal group commit, SQLite index) in that
//! folder: the least an exchange costs once the durability requirement is added, and nothing
//! else of the broker. With `--ideal-floor` as well, it waits instead for a bare group
//! commit in that folder ([`crate::floor`]): the broker's mechanics without its records.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256,
};
use serde_json::{Value, json};
use sts_broker::audit::{AuditEvent, Decision};
use sts_broker::jose::{b64url, b64url_decode};
use sts_broker::trail::AuditWriter;

use crate::floor::{Floor, GroupCommit};

struct Keys {
    inbound: ParsedPublicKey,
    signing: EcdsaKeyPair,
    rng: SystemRandom,
    audit: Option<AuditWriter>,
    floor: Option<GroupCommit>,
    metrics: Arc<sts_broker::metrics::Metrics>,
}

/// Serves `POST /token` and `GET /healthz` on `port` until killed; with `audit_dir`, every
/// exchange waits for its audit record's group commit to the journal in that folder, or
/// with `floor` too, for a bare group commit there.
pub async fn serve(
    port: u16,
    audit_dir: Option<&Path>,
    floor: Option<Floor>,
) -> anyhow::Result<()> {
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
    let metrics = Arc::new(sts_broker::metrics::Metrics::new());
    let (audit, floor) = match (audit_dir, floor) {
        (Some(dir), Some(floor)) => (None, Some(GroupCommit::start(floor, dir)?)),
        (Some(dir), None) => (Some(audit_writer(dir, metrics.clone()).await?), None),
        (None, _) => (None, None),
    };
    let keys = web::Data::new(Keys {
        inbound,
        signing,
        rng,
        audit,
        floor,
        metrics,
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).context("binding the ideal handler")?;
    HttpServer::new(move || {
        App::new()
            .app_data(keys.clone())
            .route("/token", web::post().to(token))
            .route("/healthz", web::get().to(HttpResponse::Ok))
            .route("/metrics", web::get().to(metrics_page))
    })
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}

/// The broker's audit trail, as `serve` opens it by default: journal (fsync) and SQLite index.
async fn audit_writer(
    dir: &Path,
    metrics: Arc<sts_broker::metrics::Metrics>,
) -> anyhow::Result<AuditWriter> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
    let store = sts_broker::storage::connect(&url)
        .await
        .context("opening the audit database")?;
    let options = sts_broker::trail::TrailOptions {
        durable_write: sts_broker::trail::DurableWrite::Journal(
            sts_broker::journal::JournalOptions {
                dir: dir.join("audit-journal"),
                segment_bytes: sts_broker::journal::DEFAULT_SEGMENT_BYTES,
                durability: sts_broker::journal::Durability::Fsync,
            },
        ),
        retention: std::time::Duration::from_secs(90 * 86400),
    };
    let (writer, _) = sts_broker::trail::start(options, store, metrics)
        .await
        .context("starting the audit trail")?;
    Ok(writer)
}

/// The audit writer's counters, as the broker exports them.
async fn metrics_page(keys: web::Data<Keys>) -> HttpResponse {
    HttpResponse::Ok().body(keys.metrics.render())
}

async fn token(body: web::Bytes, keys: web::Data<Keys>) -> HttpResponse {
    let Some((access_token, record)) = exchange(&body, &keys) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    if let Some(audit) = &keys.audit
        && audit.record(record).await.is_err()
    {
        return unavailable();
    }
    if let Some(floor) = &keys.floor
        && floor.wait().await.is_err()
    {
        return unavailable();
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({
            "access_token": access_token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 900,
            "scope": "read deploy:write",
        }))
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({"error": "temporarily_unavailable"}))
}

/// The issued token and the facts an audit record keeps about the exchange.
fn exchange(body: &[u8], keys: &Keys) -> Option<(String, AuditEvent)> {
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
    let jti = sts_broker::ids::random().to_string();
    let issued = json!({
        "iss": "http://ideal",
        "sub": claims.get("sub")?,
        "aud": "https://api.internal.example",
        "exp": now + 900,
        "iat": now,
        "jti": jti,
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
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let record = AuditEvent {
        // Time-ordered, as the broker's: ids that grow append to the index.
        request_id: sts_broker::ids::time_ordered().simple().to_string(),
        time: now,
        kind: sts_broker::audit::AuditKind::Exchange,
        decision: Some(Decision::Allow),
        reason: "issued".into(),
        client_addr: Some("127.0.0.1".into()),
        policy: Some("ideal".into()),
        inbound_iss: text("iss"),
        inbound_sub: text("sub"),
        inbound_jti: text("jti"),
        issued_jti: Some(jti),
        issued_exp: Some(now + 900),
        detail: json!({"audience": null, "scope": null, "policy": null}),
        claims_text: None,
    };
    Some((token, record))
}
