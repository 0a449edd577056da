//! RFC 6749 §5.2 error responses, and the mapping from domain errors to them.

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
}

impl OAuthError {
    /// `invalid_request` (400).
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Any error.
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    /// The JSON response, with the request id in the body too.
    pub fn response(&self, request_id: &str) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder
            .insert_header((CACHE_CONTROL, "no-store"))
            .insert_header((PRAGMA, "no-cache"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            builder.insert_header(("Retry-After", "5"));
        }
        builder.json(json!({
            "error": self.error,
            "error_description": self.description,
            "request_id": request_id,
        }))
    }
}

impl From<&ExchangeError> for OAuthError {
    fn from(e: &ExchangeError) -> Self {
        let text = e.to_string();
        match e {
            ExchangeError::Inbound(InboundError::Unavailable) | ExchangeError::Unavailable => {
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    text,
                )
            }
            ExchangeError::InvalidTarget => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_target", text)
            }
            ExchangeError::InvalidScope => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_scope", text)
            }
            ExchangeError::Inbound(_)
            | ExchangeError::NotAdmitted
            | ExchangeError::AudienceRequired => Self::invalid_request(text),
        }
    }
}
