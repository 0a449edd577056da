//! The opening both exchange endpoints share (`/token` and `/sts/exchange`): who the client
//! is, admitted under the per-client rate limit before its body is read, so a flooding
//! client costs little; then the context its exchange is recorded with.

use actix_web::{HttpRequest, web};

use super::client_addr::client_of;
use super::oauth_error::OAuthError;
use super::request_id::RequestId;
use crate::exchange::RequestContext;
use crate::ratelimit::ClientLimit;
use crate::trusted_proxies::TrustedProxies;

/// A client admitted to ask for an exchange.
pub struct Caller {
    client: Option<String>,
}

impl Caller {
    /// Reads the client address of `req` and checks its rate.
    pub fn admit(req: &HttpRequest) -> Result<Self, OAuthError> {
        let proxies = req.app_data::<web::Data<TrustedProxies>>();
        let client = proxies.and_then(|p| client_of(p, req));
        if let Some(limit) = req.app_data::<web::Data<ClientLimit>>() {
            limit
                .check(client.as_deref())
                .map_err(|wait| OAuthError::rate_limited(wait, "too many requests; retry later"))?;
        }
        Ok(Self { client })
    }

    /// The exchange's context, timed now (once the request has been read).
    pub fn context(self, id: &RequestId) -> RequestContext {
        RequestContext {
            request_id: id.0.clone(),
            client_addr: self.client,
            now: crate::jose::unix_now(),
        }
    }
}
