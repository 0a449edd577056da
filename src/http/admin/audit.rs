//! `/admin/v1/audit`: pages of decisions and admin changes, and one request's records.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::extract::Reader;
use super::failure::AdminFailure;
use crate::audit::{AuditFilter, AuditKind, AuditRecord, Decision};
use crate::http::body::Params;
use crate::http::request_id::RequestId;
use crate::time::{parse_time, rfc3339};
use crate::trail::{AuditTrail, MAX_PAGE};

type Answer = Result<HttpResponse, AdminFailure>;

/// `GET /admin/v1/audit?since=…&until=…&decision=…&policy=…&subject=…&reason=…&kind=…&limit=…&cursor=…`.
pub async fn page(
    _: Reader,
    req: HttpRequest,
    trail: web::Data<AuditTrail>,
    id: RequestId,
) -> Answer {
    let filter = filter(req.query_string()).map_err(|m| AdminFailure::invalid(m, &id))?;
    let page = trail
        .page(&filter)
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    let events: Vec<Value> = page.records.iter().map(record_json).collect();
    Ok(
        HttpResponse::Ok()
            .json(json!({"events": events, "next": page.next.map(|n| n.to_string())})),
    )
}

/// `GET /admin/v1/audit/{request_id}`.
pub async fn one(
    _: Reader,
    trail: web::Data<AuditTrail>,
    id: RequestId,
    request_id: web::Path<String>,
) -> Answer {
    let records = trail
        .by_request(&request_id)
        .await
        .map_err(|e| AdminFailure::admin(e.into(), &id))?;
    if records.is_empty() {
        return Err(AdminFailure::not_found(
            "no audit record has this request id",
            &id,
        ));
    }
    let events: Vec<Value> = records.iter().map(record_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "events": events })))
}

/// Parses audit filters; anything unknown or malformed is refused rather than ignored, so a
/// typo never turns a narrow query into a scan of everything.
fn filter(query: &str) -> Result<AuditFilter, String> {
    let params = Params::parse(query.as_bytes()).map_err(|e| e.description)?;
    let mut filter = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    for (name, value) in params.iter() {
        let bad = || format!("invalid {name}: {value:?}");
        match name {
            "since" => filter.since = Some(parse_time(value).ok_or_else(bad)?),
            "until" => filter.until = Some(parse_time(value).ok_or_else(bad)?),
            "decision" => filter.decision = Some(Decision::parse(value).ok_or_else(bad)?),
            "policy" => filter.policy = Some(value.to_owned()),
            "subject" => filter.subject = Some(value.to_owned()),
            "reason" => filter.reason = Some(value.to_owned()),
            "kind" => filter.kind = Some(AuditKind::parse(value).ok_or_else(bad)?),
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
                    "unknown filter {name:?} (since, until, decision, policy, subject, reason, kind, limit, cursor)"
                ));
            }
        }
    }
    Ok(filter)
}

fn record_json(record: &AuditRecord) -> Value {
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
        "detail": e.full_detail(),
    })
}
