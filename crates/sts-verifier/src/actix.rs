//! An actix-web extractor: `BrokerToken` verifies the request's bearer token.
//!
//! ```no_run
//! use actix_web::{App, HttpResponse, web};
//! use sts_verifier::{Verifier, actix::BrokerToken};
//!
//! async fn deploy(token: BrokerToken) -> HttpResponse {
//!     HttpResponse::Ok().body(format!("deploying for {}", token.sub))
//! }
//!
//! # fn app(verifier: Verifier) {
//! let verifier = web::Data::new(verifier);
//! let app = App::new().app_data(verifier).route("/deploy", web::get().to(deploy));
//! # }
//! ```
//!
//! Refusals follow RFC 6750 §3: 401 with `WWW-Authenticate: Bearer realm="<audience>"` (and
//! `error="invalid_token"` when a token was sent), 403 `insufficient_scope` naming the
//! required `scope`, and 503 when the broker's keys cannot be had. Bodies are
//! `{"error", "error_description"}`.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use crate::{Claims, Verifier, VerifyError};

/// The verified claims of the request's `Authorization: Bearer` token. Extracting it needs a
/// `web::Data<Verifier>` in the app's data.
#[derive(Debug, Clone)]
pub struct BrokerToken {
    claims: Claims,
    realm: String,
}

impl BrokerToken {
    /// The claims.
    pub fn into_claims(self) -> Claims {
        self.claims
    }

    /// For a route that needs scopes beyond the verifier's: `token.require_scopes([..])?`
    /// answers 403 `insufficient_scope` when one is missing.
    pub fn require_scopes<S: AsRef<str>>(
        &self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Result<(), Rejection> {
        self.claims.require_scopes(scopes).map_err(|e| Rejection {
            realm: self.realm.clone(),
            reason: Reason::Verify(e),
        })
    }
}

impl Deref for BrokerToken {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.claims
    }
}

impl FromRequest for BrokerToken {
    type Error = Rejection;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Rejection>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let Some(verifier) = verifier else {
                return Err(Rejection::new(String::new(), Reason::NoVerifier));
            };
            let realm = verifier.audience().to_owned();
            let Some(token) = token else {
                return Err(Rejection::new(realm, Reason::Missing));
            };
            match verifier.verify(&token).await {
                Ok(claims) => Ok(BrokerToken { claims, realm }),
                Err(e) => Err(Rejection::new(realm, Reason::Verify(e))),
            }
        })
    }
}

/// The token of the one `Authorization` header, when it is a `Bearer` credential (the scheme
/// is case-insensitive, RFC 7235 §2.1).
fn bearer_token(req: &HttpRequest) -> Option<String> {
    let mut headers = req.headers().get_all(AUTHORIZATION);
    let (value, None) = (headers.next()?, headers.next()) else {
        return None;
    };
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Why a request was refused; renders the RFC 6750 response.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    realm: String,
    reason: Reason,
}

#[derive(Debug, thiserror::Error)]
enum Reason {
    #[error("no bearer token")]
    Missing,
    #[error(transparent)]
    Verify(VerifyError),
    /// A set-up mistake, not the caller's: the app has no `web::Data<Verifier>`.
    #[error("BrokerToken needs web::Data<Verifier> in the app data")]
    NoVerifier,
}

impl Rejection {
    fn new(realm: String, reason: Reason) -> Self {
        Self { realm, reason }
    }

    /// The refusal as a [`VerifyError`], when a token was sent and checked.
    pub fn verify_error(&self) -> Option<&VerifyError> {
        match &self.reason {
            Reason::Verify(e) => Some(e),
            _ => None,
        }
    }

    /// The RFC 6750 challenge, for 401 and 403.
    fn challenge(&self) -> Option<String> {
        let realm = format!("Bearer realm=\"{}\"", quoted(&self.realm));
        match &self.reason {
            // §3.1: a request without credentials gets no error code.
            Reason::Missing => Some(realm),
            Reason::Verify(e @ VerifyError::InvalidToken(reason)) => Some(format!(
                "{realm}, error=\"{}\", error_description=\"{}\"",
                e.error_code(),
                quoted(&reason.to_string())
            )),
            Reason::Verify(e @ VerifyError::InsufficientScope { required, .. }) => Some(format!(
                "{realm}, error=\"{}\", scope=\"{}\"",
                e.error_code(),
                quoted(&required.join(" "))
            )),
            Reason::Verify(VerifyError::KeysUnavailable(_)) | Reason::NoVerifier => None,
        }
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        match &self.reason {
            Reason::Missing => StatusCode::UNAUTHORIZED,
            Reason::Verify(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            Reason::NoVerifier => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // The description is a fixed sentence per check; fetch failures and set-up mistakes
        // stay out of the body (they name internal URLs).
        let (error, description) = match &self.reason {
            Reason::Missing => ("invalid_request", "a bearer token is required".to_owned()),
            Reason::Verify(e @ VerifyError::KeysUnavailable(_)) => (
                e.error_code(),
                "the broker's keys are unavailable; retry later".to_owned(),
            ),
            Reason::Verify(e @ VerifyError::InvalidToken(reason)) => {
                (e.error_code(), reason.to_string())
            }
            Reason::Verify(e) => (e.error_code(), e.to_string()),
            Reason::NoVerifier => ("server_error", "internal error".to_owned()),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Some(challenge) = self.challenge() {
            response.insert_header((WWW_AUTHENTICATE, challenge));
        }
        response.json(json!({"error": error, "error_description": description}))
    }
}

/// Escapes a quoted-string (RFC 9110 §5.6.4); control characters are dropped, since a header
/// cannot carry them.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;
    use crate::InvalidToken;

    fn rejection(reason: Reason) -> HttpResponse {
        Rejection::new("https://deploy.internal".into(), reason).error_response()
    }

    fn challenge(response: &HttpResponse) -> Option<&str> {
        response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let missing = rejection(Reason::Missing);
        assert_eq!(missing.status(), 401);
        assert_eq!(
            challenge(&missing),
            Some(r#"Bearer realm="https://deploy.internal""#)
        );

        let invalid = rejection(Reason::Verify(InvalidToken::Expired.into()));
        assert_eq!(invalid.status(), 401);
        assert_eq!(
            challenge(&invalid),
            Some(
                r#"Bearer realm="https://deploy.internal", error="invalid_token", error_description="the token has expired""#
            )
        );

        let scope = rejection(Reason::Verify(VerifyError::InsufficientScope {
            required: vec!["deploy:write".into(), "a:b".into()],
            missing: vec!["a:b".into()],
        }));
        assert_eq!(scope.status(), 403);
        assert_eq!(
            challenge(&scope),
            Some(
                r#"Bearer realm="https://deploy.internal", error="insufficient_scope", scope="deploy:write a:b""#
            )
        );

        let down = rejection(Reason::Verify(VerifyError::KeysUnavailable(
            crate::FetchError::CoolingDown,
        )));
        assert_eq!(down.status(), 503);
        assert_eq!(challenge(&down), None);
    }

    #[test]
    fn only_one_bearer_header_is_a_token() {
        let token = |headers: &[&str]| {
            let mut req = TestRequest::default();
            for h in headers {
                req = req.append_header((AUTHORIZATION, *h));
            }
            bearer_token(&req.to_http_request())
        };
        assert_eq!(token(&["Bearer abc"]).as_deref(), Some("abc"));
        assert_eq!(token(&["bearer abc"]).as_deref(), Some("abc"));
        assert_eq!(token(&["Basic abc"]), None);
        assert_eq!(token(&["Bearer "]), None);
        assert_eq!(token(&["Bearer"]), None);
        assert_eq!(token(&[]), None);
        assert_eq!(token(&["Bearer a", "Bearer b"]), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(quoted("a\r\nb"), "ab");
    }
}
