//! Admin failures as JSON: the shape of OAuth errors, plus `errors` for validation.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::admin::{AdminError, AuthError};
use crate::http::oauth_error::OAuthError;
use crate::http::request_id::RequestId;

/// An admin request that failed, ready to answer.
#[derive(Debug)]
pub struct AdminFailure {
    status: StatusCode,
    error: &'static str,
    description: String,
    errors: Vec<String>,
    request_id: String,
}

impl AdminFailure {
    /// A failure with this status, code and sentence.
    pub fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
        id: &RequestId,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            errors: Vec::new(),
            request_id: id.0.clone(),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(description: impl Into<String>, id: &RequestId) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description, id)
    }

    /// 404 `not_found`.
    pub fn not_found(description: &str, id: &RequestId) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description, id)
    }

    /// The answer to a failed admin operation.
    pub fn admin(e: AdminError, id: &RequestId) -> Self {
        match e {
            AdminError::Invalid(errors) => Self {
                errors,
                ..Self::invalid("the document is invalid; nothing was changed", id)
            },
            AdminError::NotFound => Self::not_found("no such document", id),
            AdminError::PreconditionFailed => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the document changed since it was read; fetch it again",
                id,
            ),
            AdminError::Conflict(message) => {
                Self::new(StatusCode::CONFLICT, "conflict", message, id)
            }
            AdminError::Unavailable(cause) => {
                tracing::error!(request_id = %id.0, error = %cause, "admin operation failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the database is unavailable",
                    id,
                )
            }
        }
    }

    /// The answer to a missing or insufficient credential.
    pub fn auth(e: AuthError, id: &RequestId) -> Self {
        match e {
            AuthError::Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "admin credentials are required",
                id,
            ),
            AuthError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                e.to_string(),
                id,
            ),
        }
    }

    /// A request refused before it reached an admin operation (its body, its parameters).
    pub fn oauth(e: OAuthError, id: &RequestId) -> Self {
        Self::new(e.status, e.error, e.description, id)
    }
}

impl std::fmt::Display for AdminFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for AdminFailure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({
            "error": self.error,
            "error_description": self.description,
            "request_id": self.request_id,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"sts-broker-admin\"",
            ));
        }
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body)
    }
}
