//! RFC 6749 §5.2 error responses, and the mapping from domain errors to them.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use serde_json::json;

use crate::exchange::ExchangeError;
use crate::inbound::InboundError;

/// An OAuth error as the client sees it.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// RFC 6749 error code.
    pub error: &'static str,
    /// A safe, human sentence.
    pub description: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` challenge (401, RFC 6750 §3).
    pub challenge: Option<&'static str>,
}

impl OAuthError {
    /// `invalid_request` (400).
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Any error; 503s carry a short `Retry-After`.
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(5),
            challenge: None,
        }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// 429 with `Retry-After` in whole seconds (at least one). `slow_down` is the registered
    /// OAuth error for "too frequent" (RFC 8628); RFC 6749 defines none.
    pub fn rate_limited(wait: Duration, description: impl Into<String>) -> Self {
        Self {
            retry_after: Some(whole_seconds(wait)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", description)
        }
    }

    /// The JSON response, with the request id in the body too.
    pub fn response(&self, request_id: &str) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder
            .insert_header((CACHE_CONTROL, "no-store"))
            .insert_header((PRAGMA, "no-cache"));
        if let Some(seconds) = self.retry_after {
            builder.insert_header(("Retry-After", seconds.to_string()));
        }
        if let Some(challenge) = self.challenge {
            builder.insert_header((actix_web::http::header::WWW_AUTHENTICATE, challenge));
        }
        builder.json(json!({
            "error": self.error,
            "error_description": self.description,
            "request_id": request_id,
        }))
    }
}

/// `wait` rounded up to whole seconds, at least one (`Retry-After` has no fractions).
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl From<&ExchangeError> for OAuthError {
    fn from(e: &ExchangeError) -> Self {
        let text = e.to_string();
        match e {
            // When the issuer's keys may next be fetched: a retry before then gets a 503 too.
            ExchangeError::Inbound(InboundError::Unavailable { retry_after }) => Self {
                retry_after: Some(whole_seconds(*retry_after)),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    text,
                )
            },
            ExchangeError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                text,
            ),
            // GitHub's wait when it gave one; otherwise the usual short one.
            ExchangeError::GitHubUnavailable(wait) => {
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    text,
                );
                if let Some(wait) = wait {
                    e.retry_after = Some(whole_seconds(*wait));
                }
                e
            }
            ExchangeError::InvalidTarget | ExchangeError::GitHubRefused { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_target", text)
            }
            ExchangeError::InvalidScope => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_scope", text)
            }
            ExchangeError::RateLimited(wait) => Self::rate_limited(*wait, text),
            ExchangeError::Inbound(_)
            | ExchangeError::NotAdmitted
            | ExchangeError::AudienceRequired
            | ExchangeError::Replayed => Self::invalid_request(text),
        }
    }
}
