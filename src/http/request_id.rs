//! Every response carries `X-Request-Id`; handlers read the same id for bodies and audit.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};

/// The header name.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request. Generated here, never taken from the client, so the audit
/// log's ids cannot be forged or made to collide.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A UUIDv7: a millisecond timestamp, then 74 random bits. Ids that grow with time are
/// appended at the end of the audit log's request-id index instead of landing on a random
/// page of it, so a group commit writes one index page rather than one per record.
fn new_id() -> String {
    crate::ids::time_ordered().simple().to_string()
}

/// Middleware: assigns the id and sets the header on the way out.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = new_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    Ok(res)
}

impl FromRequest for RequestId {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(new_id()));
        ready(Ok(id))
    }
}
