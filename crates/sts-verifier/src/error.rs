//! What can go wrong: one enum for a refused token, one for fetching keys, one for set-up.
//!
//! The three outcomes an API must tell apart map to RFC 6750 answers: a bad token is 401
//! `invalid_token`, a good token without the scope is 403 `insufficient_scope`, and keys that
//! cannot be had is 503 (the token may be fine; the caller should retry, not re-authenticate).

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not a valid broker token for this API.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] InvalidToken),
    /// A valid token that lacks some required scopes.
    #[error("the token lacks required scope: {}", .missing.join(" "))]
    InsufficientScope {
        /// Every scope the API requires (RFC 6750 `scope` attribute).
        required: Vec<String>,
        /// Those the token does not carry.
        missing: Vec<String>,
    },
    /// The broker's keys cannot be had, so no token can be checked right now.
    #[error("the broker's signing keys are unavailable")]
    KeysUnavailable(#[source] FetchError),
}

impl VerifyError {
    /// The HTTP status an API should answer with: 401, 403 or 503.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidToken(_) => 401,
            Self::InsufficientScope { .. } => 403,
            Self::KeysUnavailable(_) => 503,
        }
    }

    /// The RFC 6750 / RFC 6749 error code for the response.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::KeysUnavailable(_) => "temporarily_unavailable",
        }
    }
}

/// Which check an invalid token failed. The messages are safe to show a caller: they name the
/// check, never the value this API expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    /// Larger than 16 KiB.
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url segments, header and payload JSON objects.
    #[error("the token is not a well-formed JWS")]
    Malformed,
    /// A member appears twice in the header or payload.
    #[error("the token has a duplicate JSON member")]
    DuplicateMember,
    /// `typ` is not `at+jwt`.
    #[error("the token is not an access token (typ must be at+jwt)")]
    WrongType,
    /// `alg` is not on the allow-list.
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// The header has `crit`: extensions this verifier does not understand.
    #[error("the token has critical header parameters")]
    Critical,
    /// No `kid` in the header.
    #[error("the token has no kid")]
    MissingKid,
    /// No published key has this `kid` (or the broker publishes it more than once, so it
    /// names no key).
    #[error("no published key matches the token's kid")]
    UnknownKey,
    /// The key with this `kid` is for another algorithm.
    #[error("the token's algorithm does not match its key")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Signature,
    /// `iss` is not the broker.
    #[error("the token is from another issuer")]
    Issuer,
    /// `aud` does not name this API.
    #[error("the token is for another audience")]
    Audience,
    /// Past `exp` (plus leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond leeway).
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A claim is missing or has the wrong JSON type.
    #[error("the token's {0} claim is missing or malformed")]
    Claim(&'static str),
}

/// Why the broker's keys could not be fetched (the JOSE core's fetch error).
pub use sts_jose::fetch::FetchError;

/// Why a [`Verifier`](crate::Verifier) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The issuer URL is not https (or http on a loopback host), or has a query or fragment.
    #[error(
        "issuer URL {0:?} must be https:// (or http:// on a loopback host) without query or fragment"
    )]
    Issuer(String),
    /// No audience: every token the broker issues for any API would be accepted.
    #[error("an audience is required")]
    NoAudience,
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}
