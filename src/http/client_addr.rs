//! The client address of a request, as `trusted_proxies` says to read it.

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;

use crate::trusted_proxies::TrustedProxies;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address of `req`, as text for rate limits and audit records.
pub fn client_of(proxies: &TrustedProxies, req: &HttpRequest) -> Option<String> {
    let forwarded = req.headers().get_all(X_FORWARDED_FOR).map(|v| v.as_bytes());
    proxies
        .client(req.peer_addr().map(|a| a.ip()), forwarded)
        .map(|ip| ip.to_string())
}
