//! `/admin/v1`: JSON over bearer auth. Thin: authenticate, parse, call `admin`, map.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{Params, read_limited};
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::admin::{
    Access, AdminError, AuthError, Principal, RevokeRequest, authenticate, rfc3339,
};
use crate::audit::{AuditFilter, AuditRecord, Decision};
use crate::broker::Broker;
use crate::exchange::ExchangeRequest;
use crate::policy::Kind;
use crate::storage::StoredRevocation;

/// Largest page of audit events.
const MAX_PAGE: u32 = 500;

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/v1")
            .route(
                "/issuers",
                web::get().to(|r, b, i| list(r, b, i, Kind::Issuer)),
            )
            .route(
                "/policies",
                web::get().to(|r, b, i| list(r, b, i, Kind::TrustPolicy)),
            )
            .route(
                "/issuers/{name}",
                web::get().to(|r, b, i, n| get(r, b, i, n, Kind::Issuer)),
            )
            .route(
                "/policies/{name}",
                web::get().to(|r, b, i, n| get(r, b, i, n, Kind::TrustPolicy)),
            )
            .route(
                "/issuers/{name}",
                web::put().to(|r, p, b, i, n| put(r, p, b, i, n, Kind::Issuer)),
            )
            .route(
                "/policies/{name}",
                web::put().to(|r, p, b, i, n| put(r, p, b, i, n, Kind::TrustPolicy)),
            )
            .route(
                "/issuers/{name}",
                web::delete().to(|r, b, i, n| delete(r, b, i, n, Kind::Issuer)),
            )
            .route(
                "/policies/{name}",
                web::delete().to(|r, b, i, n| delete(r, b, i, n, Kind::TrustPolicy)),
            )
            .route(
                "/issuers/{name}/history",
                web::get().to(|r, b, i, n| history(r, b, i, n, Kind::Issuer)),
            )
            .route(
                "/policies/{name}/history",
                web::get().to(|r, b, i, n| history(r, b, i, n, Kind::TrustPolicy)),
            )
            .route("/apply", web::post().to(apply))
            .route("/explain", web::post().to(explain))
            .route("/audit", web::get().to(audit))
            .route("/audit/{request_id}", web::get().to(audit_one))
            .route("/keys", web::get().to(keys))
            .route("/keys/rotate", web::post().to(rotate_keys))
            .route("/keys/replace", web::post().to(replace_keys))
            .route("/tokens/revoke", web::post().to(revoke_matching))
            .route("/tokens/{jti}/revoke", web::post().to(revoke_jti))
            .route("/revocations", web::get().to(revocations)),
    );
}

type Name = web::Path<String>;

/// An admin failure as JSON (same shape as OAuth errors, plus `errors` for validation).
fn failure(
    status: StatusCode,
    error: &'static str,
    description: &str,
    errors: &[String],
    id: &RequestId,
) -> HttpResponse {
    let mut body = json!({"error": error, "error_description": description, "request_id": id.0});
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"sts-broker-admin\"",
        ));
    }
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

fn admin_error(e: AdminError, id: &RequestId) -> HttpResponse {
    match e {
        AdminError::Invalid(errors) => failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the document is invalid; nothing was changed",
            &errors,
            id,
        ),
        AdminError::NotFound => failure(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such document",
            &[],
            id,
        ),
        AdminError::PreconditionFailed => failure(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the document changed since it was read; fetch it again",
            &[],
            id,
        ),
        AdminError::Conflict(message) => {
            failure(StatusCode::CONFLICT, "conflict", &message, &[], id)
        }
        AdminError::Storage(e) => {
            tracing::error!(request_id = %id.0, error = %e, "admin storage failure");
            failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the database is unavailable",
                &[],
                id,
            )
        }
    }
}

fn authorize(req: &HttpRequest, broker: &Broker, access: Access) -> Result<Principal, AuthError> {
    authenticate(broker, super::bearer(req), access, crate::jose::unix_now())
}

fn auth_failure(e: AuthError, id: &RequestId) -> HttpResponse {
    match e {
        AuthError::Unauthenticated => failure(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            &e.to_string(),
            &[],
            id,
        ),
        AuthError::Forbidden => failure(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            &e.to_string(),
            &[],
            id,
        ),
    }
}

fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// `If-Match: "vN"` → `Some(N)`; absent → `None`; anything else (including `*`, which we
/// do not support for creation races) is a bad request.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ()> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.strip_prefix("\"v")
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or(())
}

async fn list(
    req: HttpRequest,
    broker: web::Data<Broker>,
    id: RequestId,
    kind: Kind,
) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    match broker.list_documents(kind).await {
        Ok(items) => HttpResponse::Ok().json(json!({ "items": items })),
        Err(e) => admin_error(e, &id),
    }
}

async fn get(
    req: HttpRequest,
    broker: web::Data<Broker>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    match broker.get_document(kind, &name).await {
        Ok(view) => HttpResponse::Ok()
            .insert_header((header::ETAG, etag(view.version)))
            .json(view.document),
        Err(e) => admin_error(e, &id),
    }
}

async fn put(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> HttpResponse {
    let who = match authorize(&req, &broker, Access::Write) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    let Ok(expected) = if_match(&req) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "If-Match must be an ETag this API gave (\"vN\")",
            &[],
            &id,
        );
    };
    let body = match read_json(&req, payload).await {
        Ok(v) => v,
        Err(e) => return e.response(&id.0),
    };
    match broker
        .put_document(kind, &name, body, expected, &who, &id.0)
        .await
    {
        Ok((view, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            HttpResponse::build(status)
                .insert_header((header::ETAG, etag(view.version)))
                .json(view.document)
        }
        Err(e) => admin_error(e, &id),
    }
}

async fn delete(
    req: HttpRequest,
    broker: web::Data<Broker>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> HttpResponse {
    let who = match authorize(&req, &broker, Access::Write) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    let Ok(expected) = if_match(&req) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "If-Match must be an ETag this API gave (\"vN\")",
            &[],
            &id,
        );
    };
    match broker
        .delete_document(kind, &name, expected, &who, &id.0)
        .await
    {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => admin_error(e, &id),
    }
}

async fn history(
    req: HttpRequest,
    broker: web::Data<Broker>,
    id: RequestId,
    name: Name,
    kind: Kind,
) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    match broker.document_history(kind, &name).await {
        Ok(versions) => HttpResponse::Ok().json(json!({ "versions": versions })),
        Err(e) => admin_error(e, &id),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    documents: Vec<Value>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    dry_run: bool,
}

async fn apply(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
    id: RequestId,
) -> HttpResponse {
    let body: ApplyBody = match read_json(&req, payload).await.and_then(|v| {
        serde_json::from_value(v).map_err(|e| OAuthError::invalid_request(e.to_string()))
    }) {
        Ok(b) => b,
        Err(e) => return e.response(&id.0),
    };
    let access = if body.dry_run {
        Access::Read
    } else {
        Access::Write
    };
    let who = match authorize(&req, &broker, access) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    match broker
        .apply_documents(body.documents, body.prune, body.dry_run, &who, &id.0)
        .await
    {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e) => admin_error(e, &id),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    subject_token: String,
    audience: Option<String>,
    scope: Option<String>,
    policy: Option<String>,
}

async fn explain(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
    id: RequestId,
) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    let body: ExplainBody = match read_json(&req, payload).await.and_then(|v| {
        serde_json::from_value(v).map_err(|e| OAuthError::invalid_request(e.to_string()))
    }) {
        Ok(b) => b,
        Err(e) => return e.response(&id.0),
    };
    let scopes = match body
        .scope
        .as_deref()
        .map(super::token::parse_scope)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return e.response(&id.0),
    };
    let request = ExchangeRequest {
        subject_token: body.subject_token,
        audience: body.audience,
        scopes,
        policy: body.policy,
    };
    HttpResponse::Ok().json(broker.explain(&request, crate::jose::unix_now()).await)
}

async fn audit(req: HttpRequest, broker: web::Data<Broker>, id: RequestId) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    let filter = match audit_filter(req.query_string()) {
        Ok(f) => f,
        Err(message) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &message,
                &[],
                &id,
            );
        }
    };
    match broker.store.query_audit(&filter).await {
        Ok(records) => {
            let next = (records.len() == filter.limit as usize)
                .then(|| records.last().map(|r| r.id.to_string()))
                .flatten();
            HttpResponse::Ok().json(
                json!({"events": records.iter().map(audit_json).collect::<Vec<_>>(), "next": next}),
            )
        }
        Err(e) => admin_error(e.into(), &id),
    }
}

async fn audit_one(
    req: HttpRequest,
    broker: web::Data<Broker>,
    id: RequestId,
    request_id: Name,
) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    match broker.store.audit_by_request(&request_id).await {
        Ok(records) if records.is_empty() => failure(
            StatusCode::NOT_FOUND,
            "not_found",
            "no audit record has this request id",
            &[],
            &id,
        ),
        Ok(records) => HttpResponse::Ok()
            .json(json!({"events": records.iter().map(audit_json).collect::<Vec<_>>()})),
        Err(e) => admin_error(e.into(), &id),
    }
}

/// Parses audit filters; anything unknown or malformed is refused rather than ignored, so a
/// typo never turns a narrow query into a scan of everything.
fn audit_filter(query: &str) -> Result<AuditFilter, String> {
    let params = Params::parse(query.as_bytes()).map_err(|e| e.description)?;
    let mut filter = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    for (name, value) in params.iter() {
        let bad = || format!("invalid {name}: {value:?}");
        match name {
            "since" => filter.since = Some(crate::admin::parse_time(value).ok_or_else(bad)?),
            "until" => filter.until = Some(crate::admin::parse_time(value).ok_or_else(bad)?),
            "decision" => filter.decision = Some(Decision::parse(value).ok_or_else(bad)?),
            "policy" => filter.policy = Some(value.to_owned()),
            "subject" => filter.subject = Some(value.to_owned()),
            "kind" if value == "exchange" || value == "admin" => {
                filter.kind = Some(value.to_owned())
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit must be 1..={MAX_PAGE}"))?
            }
            "cursor" => filter.before_id = Some(value.parse().map_err(|_| bad())?),
            _ => {
                return Err(format!(
                    "unknown filter {name:?} (since, until, decision, policy, subject, kind, limit, cursor)"
                ));
            }
        }
    }
    Ok(filter)
}

fn audit_json(record: &AuditRecord) -> Value {
    let e = &record.event;
    json!({
        "id": record.id,
        "request_id": e.request_id,
        "time": rfc3339(e.time),
        "kind": e.kind,
        "decision": e.decision,
        "reason": e.reason,
        "client_addr": e.client_addr,
        "policy": e.policy,
        "inbound": {"iss": e.inbound_iss, "sub": e.inbound_sub, "jti": e.inbound_jti},
        "issued": {"jti": e.issued_jti, "exp": e.issued_exp.map(rfc3339)},
        "detail": e.detail,
    })
}

async fn keys(req: HttpRequest, broker: web::Data<Broker>, id: RequestId) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    match broker.list_keys().await {
        Ok(keys) => HttpResponse::Ok().json(json!({"keys": keys})),
        Err(e) => admin_error(e, &id),
    }
}

async fn rotate_keys(req: HttpRequest, broker: web::Data<Broker>, id: RequestId) -> HttpResponse {
    let who = match authorize(&req, &broker, Access::Write) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    match broker.rotate_keys(&who, &id.0).await {
        Ok(keys) => HttpResponse::Ok().json(json!({"keys": keys})),
        Err(e) => admin_error(e, &id),
    }
}

async fn replace_keys(req: HttpRequest, broker: web::Data<Broker>, id: RequestId) -> HttpResponse {
    let who = match authorize(&req, &broker, Access::Write) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    match broker.replace_keys(&who, &id.0).await {
        Ok(keys) => HttpResponse::Ok().json(json!({"keys": keys})),
        Err(e) => admin_error(e, &id),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

async fn revoke_jti(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
    id: RequestId,
    jti: Name,
) -> HttpResponse {
    let who = match authorize(&req, &broker, Access::Write) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    let body: ReasonBody = match read_optional_json(&req, payload).await {
        Ok(b) => b,
        Err(e) => return e.response(&id.0),
    };
    match broker.revoke_jti(&jti, body.reason, &who, &id.0).await {
        Ok(rule) => HttpResponse::Ok().json(revocation_json(&rule)),
        Err(e) => admin_error(e, &id),
    }
}

async fn revoke_matching(
    req: HttpRequest,
    payload: web::Payload,
    broker: web::Data<Broker>,
    id: RequestId,
) -> HttpResponse {
    let who = match authorize(&req, &broker, Access::Write) {
        Ok(p) => p,
        Err(e) => return auth_failure(e, &id),
    };
    let body: RevokeRequest = match read_optional_json(&req, payload).await {
        Ok(b) => b,
        Err(e) => return e.response(&id.0),
    };
    match broker.revoke_matching(body, &who, &id.0).await {
        Ok(rule) => HttpResponse::Ok().json(revocation_json(&rule)),
        Err(e) => admin_error(e, &id),
    }
}

async fn revocations(req: HttpRequest, broker: web::Data<Broker>, id: RequestId) -> HttpResponse {
    if let Err(e) = authorize(&req, &broker, Access::Read) {
        return auth_failure(e, &id);
    }
    let list: Vec<Value> = broker
        .revocations
        .list()
        .iter()
        .map(revocation_json)
        .collect();
    HttpResponse::Ok().json(json!({"revocations": list}))
}

fn revocation_json(r: &StoredRevocation) -> Value {
    json!({
        "jti": r.jti,
        "policy": r.policy,
        "subject": r.subject,
        "issued_since": rfc3339(r.issued_since),
        "issued_until": rfc3339(r.issued_until),
        "expires_at": rfc3339(r.expires_at),
        "created_at": rfc3339(r.created_at),
        "created_by": r.created_by,
        "reason": r.reason,
    })
}

/// An optional JSON body: empty means the type's default.
async fn read_optional_json<T: serde::de::DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, OAuthError> {
    let declared_empty = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    if declared_empty || !req.headers().contains_key(header::CONTENT_TYPE) {
        let bytes = read_limited(req, payload).await?;
        if bytes.is_empty() {
            return Ok(T::default());
        }
        return Err(OAuthError::invalid_request(
            "content type must be application/json",
        ));
    }
    let value = read_json(req, payload).await?;
    serde_json::from_value(value).map_err(|e| OAuthError::invalid_request(e.to_string()))
}

/// A JSON body of at most 64 KiB.
async fn read_json(req: &HttpRequest, payload: web::Payload) -> Result<Value, OAuthError> {
    let bytes = read_limited(req, payload).await?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(OAuthError::invalid_request(
            "content type must be application/json",
        ));
    }
    crate::policy::parse::json_body(&bytes)
        .map_err(|e| OAuthError::invalid_request(format!("body is not valid JSON: {e}")))
}
